"""Alembic environment for gpuhub's own tables. They share the hub's database with JupyterHub's
tables, so gpuhub keeps its own version table (``gpuhub_alembic_version``). Run through
``gpuhub.db.database.upgrade(engine)``, which hands its connection over in ``config.attributes``."""

from alembic import context

from gpuhub.db.models import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run gpuhub's migrations through gpuhub.db.database.upgrade(engine), not the alembic CLI")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
