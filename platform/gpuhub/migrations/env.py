"""Alembic environment for gpuhub's own tables. They share the hub's database with JupyterHub's
tables, so gpuhub keeps its own version table (``gpuhub_alembic_version``)."""

from alembic import context
from sqlalchemy import create_engine

from gpuhub.store import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")


def run() -> None:
    if connection is not None:
        context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()


run()
