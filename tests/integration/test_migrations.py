"""Every migration of gpuhub's tables, from every earlier revision, on a real SQLite file and a real
PostgreSQL server (issue 18, upgrades): a database made at each revision, holding a row in every
table it has (and JupyterHub's own tables beside them), upgraded to the newest revision keeps every
row and every value, leaves JupyterHub's tables and version alone, and ends exactly as the code's
models say (alembic's own comparison of the schema with the models finds nothing)."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from jupyterhub import orm

from gpuhub.db.database import MIGRATIONS, make_engine, upgrade
from gpuhub.db.models import VERSION_TABLE, Base
from tests.pgserver import PostgresServer, postgres_bin

REVISIONS = [r.revision for r in reversed(list(ScriptDirectory(MIGRATIONS).walk_revisions()))]  # oldest first
EARLIER = REVISIONS[:-1]


@pytest.fixture(scope="module")
def postgres():
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is missing: apt-get install postgresql (or run `bash scripts/test`)", pytrace=False)
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.sqlite"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"migrate_{len(list(tmp_path.parent.iterdir()))}_{tmp_path.name[-6:].replace('-', '_')}")


def a_value(column: dict, n: int):
    """A value of ``column``'s type for row ``n`` (the types gpuhub's tables use)."""
    kind = column["type"]
    if isinstance(kind, (sa.Integer, sa.BigInteger, sa.SmallInteger)):
        return n
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return n + 0.5
    if isinstance(kind, sa.Boolean):
        return bool(n % 2)
    if isinstance(kind, sa.DateTime):
        return datetime.datetime(2026, 11, 20, 10, n % 60, 0)
    if isinstance(kind, sa.Date):
        return datetime.date(2026, 11, 20)
    if isinstance(kind, (sa.JSON,)):
        return {"n": n}
    length = getattr(kind, "length", None) or 64
    return f"v{n}"[:length]


def fill_every_table(engine) -> dict[str, dict]:
    """One row in each of gpuhub's tables (parents before children); the rows as written."""
    written = {}
    meta = sa.MetaData()
    with engine.begin() as conn:  # one connection: SQLite lets one writer in at a time
        meta.reflect(conn)
        for table in meta.sorted_tables:
            if not table.name.startswith("gpuhub_") or table.name == VERSION_TABLE:
                continue
            if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                continue  # a migration seeded it (the allocation version counter)
            row = {}
            for column in sa.inspect(conn).get_columns(table.name):
                foreign = next((fk for fk in table.foreign_keys if fk.parent.name == column["name"]), None)
                row[column["name"]] = written[foreign.column.table.name][foreign.column.name] if foreign else a_value(column, 7)
            conn.execute(table.insert().values(**row))
            written[table.name] = row
    return written


@pytest.mark.parametrize("start", EARLIER)
def test_an_upgrade_from_every_earlier_revision_keeps_every_row(db_url, start):
    engine = make_engine(db_url)
    orm.new_session_factory(db_url).kw["bind"].dispose()  # JupyterHub's own tables and version beside gpuhub's
    with engine.connect() as conn:
        hub_version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    upgrade(engine, start)
    before = fill_every_table(engine)
    assert before, f"no table at {start}"

    upgrade(engine)

    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == REVISIONS[-1]
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == hub_version
        for table, row in before.items():
            found = conn.execute(sa.select(sa.Table(table, sa.MetaData(), autoload_with=conn))).mappings().all()
            assert found, f"{table}: its row is gone after the upgrade from {start}"
            kept = [dict(r) for r in found if all(_same(r[k], v) for k, v in row.items() if k in r)]
            assert kept, f"{table}: the row written at {start} changed: {row} -> {[dict(r) for r in found]}"
        diff = compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), Base.metadata)
    gpuhub_diff = [d for d in diff if "gpuhub_" in repr(d)]
    assert gpuhub_diff == [], f"the schema after upgrading from {start} differs from the models: {gpuhub_diff}"
    engine.dispose()


def _same(found, written) -> bool:
    if isinstance(written, datetime.datetime) and isinstance(found, datetime.datetime):
        return found.replace(tzinfo=None) == written
    if isinstance(written, float):
        return abs(float(found) - written) < 1e-6
    if isinstance(written, bool):
        return bool(found) == written
    return found == written
