"""The allocation store on a real SQLite file: migrations, decisions recorded, releases, the clock
(fixtures ``store`` and ``clock`` in ``conftest.py``)."""

from sqlalchemy import inspect

from gpuhub.allocator import GpuRequest, NeverFits, NoFitNow
from gpuhub.inventory import parse_inventory
from gpuhub.store import VERSION_TABLE, Allocation, upgrade
from tests.unit.test_inventory import POOL, gpu_uuid

GiB = 1024**3
INV = parse_inventory(POOL, "file:pool.toml")




def test_migrations_create_gpuhub_tables_with_their_own_version_table(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"gpuhub_allocations", "gpuhub_allocation_devices", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # JupyterHub's own version table is left alone
    upgrade(store.engine)  # idempotent


def test_allocate_records_and_release_frees(store, clock):
    a = store.allocate(INV, GpuRequest("exclusive"), "alice", "", "gpu-1")
    assert isinstance(a, Allocation) and a.uuids == (gpu_uuid(0),) and a.created == clock.now
    b = store.allocate(INV, GpuRequest("exclusive"), "bob", "", "gpu-1")
    assert b.uuids == (gpu_uuid(1),)
    assert [x.username for x in store.live()] == ["alice", "bob"]
    assert store.release(a.id, "stopped") is True
    assert store.release(a.id, "stopped") is False  # idempotent
    c = store.allocate(INV, GpuRequest("exclusive"), "carol", "", "gpu-1")
    assert c.uuids == (gpu_uuid(0),)  # alice's GPU again


def test_shared_budget_and_refusals_pass_through(store):
    s = store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), "dan", "", "shared-20")
    assert s.memory_bytes == 20 * GiB and s.mode == "shared"
    for name in ("e1", "e2", "e3", "e4"):
        store.allocate(INV, GpuRequest("exclusive"), name, "", "gpu-1")
    assert isinstance(store.allocate(INV, GpuRequest("exclusive"), "f", "", "gpu-1"), NoFitNow)
    assert isinstance(store.allocate(INV, GpuRequest("exclusive", count=9), "g", "", "gpu-9"), NeverFits)
    assert len(store.live()) == 4  # the shared one was packed onto a GPU an exclusive request then could not take


def test_held_elsewhere_counts_the_users_other_servers_only(store):
    from gpuhub.quotas import Held

    store.allocate(INV, GpuRequest("exclusive", count=2), "alice", "", "gpu-2")
    store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), "alice", "train", "shared-20")
    store.allocate(INV, GpuRequest("exclusive"), "bob", "", "gpu-1")
    assert store.held_elsewhere("alice", "train") == [Held("exclusive", 2)]
    assert sorted(store.held_elsewhere("alice", "other"), key=lambda h: h.mode) == [Held("exclusive", 2), Held("shared", 1)]
    assert store.held_elsewhere("carol", "") == []
