"""The hub's GPU pool (``GpuPool``) on a real SQLite file and a simulated inventory: waiting in line
in order, cancelling, timing out, refusals, releases, restart reconcile and force-free."""

import asyncio

import pytest

from gpuhub.allocations import GpuPool
from gpuhub.errors import SpawnRefused
from gpuhub.inventory import parse_inventory
from gpuhub.profiles import gpu_request
from gpuhub.quotas import QuotaRule
from gpuhub.settings import parse_settings
from gpuhub.store import Store
from tests.conftest import BASE_SETTINGS

INVENTORY = "".join(f'[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-{i:012d}"\nname = "H100"\nmemory = "80G"\n' for i in range(2))
GPU_PROFILES = '''
[[profiles]]
name = "gpu-2"
image = "gpuhub/pytorch-cuda:cpu"
gpus = 2
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-4"
image = "gpuhub/pytorch-cuda:cpu"
gpus = 4
gpu_mode = "exclusive"
'''


def make_pool(tmp_path, queue_timeout=30, quotas=""):
    text = BASE_SETTINGS + GPU_PROFILES + f"\n[gpus]\nqueue_timeout = {queue_timeout}\n" + quotas
    settings = parse_settings(text)
    store = Store.from_url(f"sqlite:///{tmp_path}/hub.sqlite")
    return GpuPool(settings, store=store, read_inventory=lambda: parse_inventory(INVENTORY, "file:test"))


async def no_containers():
    return []


async def take(pool, user, profile="gpu-1", **kw):
    p = pool.settings.profile(profile)
    return await pool.acquire(
        holder=user, username=user, server_name="", groups=[], profile=p, request=gpu_request(p), **kw
    )


async def test_waiters_are_served_in_order_and_see_their_place(tmp_path):
    pool = make_pool(tmp_path)
    await pool.ready(no_containers)
    a = await take(pool, "a")
    b = await take(pool, "b")
    tickets = {}
    c_task = asyncio.ensure_future(take(pool, "c", on_ticket=lambda t: tickets.__setitem__("c", t)))
    await asyncio.sleep(0.05)
    d_task = asyncio.ensure_future(take(pool, "d", on_ticket=lambda t: tickets.__setitem__("d", t)))
    await asyncio.sleep(0.2)
    assert pool.queue.describe(tickets["c"]) == "waiting for a GPU (exclusive×1): 1st of 2 in line"
    assert pool.queue.describe(tickets["d"]) == "waiting for a GPU (exclusive×1): 2nd of 2 in line"
    assert await pool.release(b.id, "stopped")
    c = await asyncio.wait_for(c_task, 5)
    assert c.uuids == b.uuids and not d_task.done()  # c was first; d still waits
    assert pool.queue.position(tickets["d"]) == (1, 1)
    await pool.release(a.id, "stopped")
    d = await asyncio.wait_for(d_task, 5)
    assert d.uuids == a.uuids and tickets["d"] is None  # left the line


async def test_cancelling_leaves_the_line(tmp_path):
    pool = make_pool(tmp_path)
    await pool.ready(no_containers)
    await take(pool, "a"), await take(pool, "b")
    task = asyncio.ensure_future(take(pool, "c"))
    await asyncio.sleep(0.1)
    assert pool.queue.lines() == {"exclusive×1": ["c"]}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.queue.lines() == {}


async def test_timeout_refuses_with_the_place_in_line(tmp_path):
    pool = make_pool(tmp_path, queue_timeout=1)
    await pool.ready(no_containers)
    await take(pool, "a"), await take(pool, "b")
    with pytest.raises(SpawnRefused) as e:
        await take(pool, "c")
    assert (e.value.status_code, e.value.why) == (503, "capacity")
    assert "No GPU for profile 'gpu-1' became free within 1 seconds" in e.value.message
    assert "you were 1st of 1 in line" in e.value.message and pool.queue.lines() == {}


async def test_never_fits_and_quota_are_refused_at_once(tmp_path):
    pool = make_pool(tmp_path, quotas='\n[[quotas]]\nmax_gpus = 1\n[[quotas]]\nuser = "big"\nmax_gpus = 8\n')
    await pool.ready(no_containers)
    with pytest.raises(SpawnRefused) as e:
        await take(pool, "big", "gpu-4")
    assert e.value.status_code == 409 and "4 whole GPUs asked; this pool has 2" in e.value.message
    with pytest.raises(SpawnRefused) as e:
        await take(pool, "small", "gpu-2")
    assert e.value.status_code == 403 and "max_gpus = 1 (set by the default (settings))" in e.value.message
    # an admin raises the user's quota in the database: it wins over the file's default
    pool.store.set_quota(QuotaRule("user", "small", max_gpus=2))
    assert (await take(pool, "small", "gpu-2")).mode == "exclusive"
    assert pool.store.unset_quota("user", "small") and not pool.store.unset_quota("user", "small")
    assert (await pool.quota_for("small", [])).max_gpus.value == 1


async def test_reconcile_keeps_running_frees_gone_and_reports_strays(tmp_path):
    pool = make_pool(tmp_path)
    await pool.ready(no_containers)
    kept, gone = await take(pool, "kept"), await take(pool, "gone")
    restarted = GpuPool(pool.settings, store=pool.store, read_inventory=pool._read_inventory)  # a new hub process

    async def containers():
        return [
            {"Labels": {"org.gpuhub.allocation": str(kept.id)}, "State": "running", "Names": ["/gpuhub-kept"]},
            {"Labels": {"org.gpuhub.allocation": str(gone.id)}, "State": "exited", "Names": ["/gpuhub-gone"]},
            {"Labels": {"org.gpuhub.allocation": "999"}, "State": "running", "Names": ["/gpuhub-stray"]},
        ]

    await restarted.ready(containers)
    report = restarted.last_reconcile
    assert (report.kept, report.freed, report.strays) == ([kept.id], [gone.id], ["gpuhub-stray"])
    assert [a.id for a in restarted.store.live()] == [kept.id]


async def test_force_free_releases_once(tmp_path):
    pool = make_pool(tmp_path)
    await pool.ready(no_containers)
    a = await take(pool, "a")
    assert await pool.still_held(a.id) is True
    assert await pool.force_free(a.id, "admin") is True
    assert await pool.force_free(a.id, "admin") is False
    assert await pool.still_held(a.id) is False  # the server's next poll stops it
