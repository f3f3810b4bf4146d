"""The allocation store on a real SQLite file: migrations, decisions recorded, releases, the clock
(fixtures ``store`` and ``clock`` in ``conftest.py``)."""

from sqlalchemy import inspect

from gpuhub.policy.allocator import GpuRequest, NeverFits, NoFitNow
from gpuhub.inventory.file import parse_inventory
from gpuhub.db.database import upgrade
from gpuhub.db.models import VERSION_TABLE
from gpuhub.db.records import Allocation
from gpuhub.policy.decide import Start
from tests.unit.conftest import RULES
from tests.unit.test_inventory import POOL, gpu_uuid

GiB = 1024**3
INV = parse_inventory(POOL, "file:pool.toml")




def test_migrations_create_gpuhub_tables_with_their_own_version_table(store):
    tables = set(inspect(store.db.engine).get_table_names())
    assert {"gpuhub_allocations", "gpuhub_allocation_devices", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # JupyterHub's own version table is left alone
    upgrade(store.db.engine)  # idempotent


def test_allocate_records_and_release_frees(store, clock):
    a = store.allocate(INV, GpuRequest("exclusive"), "alice", "", "gpu-1")
    assert isinstance(a, Allocation) and a.uuids == (gpu_uuid(0),) and a.created == clock.now
    b = store.allocate(INV, GpuRequest("exclusive"), "bob", "", "gpu-1")
    assert b.uuids == (gpu_uuid(1),)
    assert [x.username for x in store.allocations.live()] == ["alice", "bob"]
    assert store.allocations.release(a.id, "stopped") is True
    assert store.allocations.release(a.id, "stopped") is False  # idempotent
    c = store.allocate(INV, GpuRequest("exclusive"), "carol", "", "gpu-1")
    assert c.uuids == (gpu_uuid(0),)  # alice's GPU again


def test_shared_budget_and_refusals_pass_through(store):
    s = store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), "dan", "", "shared-20")
    assert s.memory_bytes == 20 * GiB and s.mode == "shared"
    for name in ("e1", "e2", "e3", "e4"):
        store.allocate(INV, GpuRequest("exclusive"), name, "", "gpu-1")
    assert isinstance(store.allocate(INV, GpuRequest("exclusive"), "f", "", "gpu-1"), NoFitNow)
    assert isinstance(store.allocate(INV, GpuRequest("exclusive", count=9), "g", "", "gpu-9"), NeverFits)
    assert len(store.allocations.live()) == 4  # the shared one was packed onto a GPU an exclusive request then could not take


def test_held_elsewhere_counts_the_users_other_servers_only(store):
    from gpuhub.policy.quotas import Held

    store.allocate(INV, GpuRequest("exclusive", count=2), "alice", "", "gpu-2")
    store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), "alice", "train", "shared-20")
    store.allocate(INV, GpuRequest("exclusive"), "bob", "", "gpu-1")
    assert store.allocations.held_elsewhere("alice", "train") == [Held("exclusive", 2)]
    assert sorted(store.allocations.held_elsewhere("alice", "other"), key=lambda h: h.mode) == [Held("exclusive", 2), Held("shared", 1)]
    assert store.allocations.held_elsewhere("carol", "") == []


def test_a_store_sees_what_another_store_changed(store):
    """The holdings a store keeps between decisions are read again once another store (another
    process) allocated or released: no GPU is handed out twice."""
    from gpuhub.db.allocations import AllocationStore

    other = AllocationStore(store.db)
    mine = store.allocate(INV, GpuRequest("exclusive"), "alice", "", "gpu-1")
    theirs = other.allocate(INV, Start("bob", "", (), "gpu-1", GpuRequest("exclusive"), GiB, 1.0), RULES)
    assert (mine.uuids, theirs.uuids) == ((gpu_uuid(0),), (gpu_uuid(1),))
    assert store.allocate(INV, GpuRequest("exclusive"), "carol", "", "gpu-1").uuids == (gpu_uuid(2),)
    assert other.release(mine.id, "stopped elsewhere")
    assert store.allocate(INV, GpuRequest("exclusive"), "dan", "", "gpu-1").uuids == (gpu_uuid(0),)


def test_kept_holdings_match_the_database_after_every_change(store):
    def kept_is_read():  # what the store keeps is what the database reads
        assert sorted(store.allocations._kept[1].values(), key=str) == sorted(store.allocations.holdings(), key=str)

    a = store.allocate(INV, GpuRequest("exclusive", count=2), "alice", "", "gpu-2")
    kept_is_read()
    for user in ("b", "c", "d"):
        store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), user, "", "shared-20")
        kept_is_read()
    store.allocate(INV, GpuRequest("shared", memory_bytes=10 * GiB), "b", "", "shared-10")  # supersedes b's
    kept_is_read()
    store.allocations.release(a.id, "stopped")
    kept_is_read()
