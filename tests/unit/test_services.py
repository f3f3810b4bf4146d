"""The hub's services on a real SQLite file, a fake engine (``tests/fakeengine.py``: a simulated
inventory, containers in memory) and a clock the test moves: waiting in line in order, cancelling,
timing out, refusals, releases, the restart reconcile, force-free; every change that can let a waiter
in wakes the lines from inside its service; the accounting rounds against the weekly GPU-hours."""

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from gpuhub.db.allocations import AllocationStore
from gpuhub.db.database import Database
from gpuhub.hub.progress import StartProgress
from gpuhub.hub.services import Services
from gpuhub.inventory.file import parse_inventory
from gpuhub.config.schema import parse_settings
from gpuhub.policy.decide import Start
from gpuhub.policy.errors import SpawnRefused
from gpuhub.policy.profiles import gpu_request
from gpuhub.policy.quotas import QuotaRule
from gpuhub.policy.sessions import Session, Window
from tests.conftest import BASE_SETTINGS
from tests.fakeengine import FakeEngine

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


def make_services(tmp_path, clock, queue_timeout=30, extra=""):
    settings = parse_settings(BASE_SETTINGS + GPU_PROFILES + f"\n[gpus]\nqueue_timeout = {queue_timeout}\n" + extra)
    database = Database.open(f"sqlite:///{tmp_path}/hub.sqlite", clock)
    return Services(settings, engine=FakeEngine(parse_inventory(INVENTORY, "file:test")), database=database, clock=clock)


def start_of(services, user, profile="gpu-1", server="", session=""):
    p = services.settings.profile(profile)
    return Start(user, server, (), p.name, gpu_request(p), p.mem_limit, p.cpu_limit, session)


async def until(predicate, what: str, seconds: float = 5) -> None:
    """Wait (on the loop) until ``predicate()``: a start reads and writes the database before it stands in line."""
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {seconds} s: {what}")


async def take(services, user, profile="gpu-1", progress=None, session=None):
    start = start_of(services, user, profile, session=session.name if session else "")
    return await services.allocation.acquire(start, user, progress or StartProgress(), session)


@pytest.fixture
async def services(tmp_path, clock):
    services = make_services(tmp_path, clock)
    await services.allocation.ready()
    return services


async def test_waiters_are_served_in_order_and_see_their_place(services):
    a = await take(services, "a")
    b = await take(services, "b")
    progress = {"c": StartProgress(), "d": StartProgress()}
    c_task = asyncio.ensure_future(take(services, "c", progress=progress["c"]))
    await until(lambda: progress["c"].message.startswith("waiting"), "c in line")
    d_task = asyncio.ensure_future(take(services, "d", progress=progress["d"]))
    await until(lambda: "1st of 2" in progress["c"].message and progress["d"].message.startswith("waiting"), "d behind c")
    assert progress["c"].message == "waiting for a GPU (exclusive×1): 1st of 2 in line"
    assert progress["d"].message == "waiting for a GPU (exclusive×1): 2nd of 2 in line"
    assert await services.allocation.release(b.id, "stopped")
    c = await asyncio.wait_for(c_task, 5)
    assert c.uuids == b.uuids and not d_task.done()  # c was first; d still waits
    await until(lambda: "1st of 1" in progress["d"].message, "d first")
    assert progress["d"].message == "waiting for a GPU (exclusive×1): 1st of 1 in line"
    await services.allocation.release(a.id, "stopped")
    d = await asyncio.wait_for(d_task, 5)
    assert d.uuids == a.uuids and progress["d"].message == "GPU assigned; starting your server"
    assert services.allocation.lines.lines() == {}  # left the line


async def test_cancelling_leaves_the_line(services):
    await take(services, "a"), await take(services, "b")
    task = asyncio.ensure_future(take(services, "c"))
    await until(lambda: services.allocation.lines.lines() == {"exclusive×1": ["c"]}, "c in line")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert services.allocation.lines.lines() == {}


async def test_timeout_refuses_with_the_place_in_line(tmp_path, clock):
    services = make_services(tmp_path, clock, queue_timeout=1)
    await take(services, "a"), await take(services, "b")
    with pytest.raises(SpawnRefused) as e:
        await take(services, "c")
    assert (e.value.status_code, e.value.why) == (503, "capacity")
    assert "No GPU for profile 'gpu-1' became free within 1 s" in e.value.message
    assert "you were 1st of 1 in line" in e.value.message and services.allocation.lines.lines() == {}


async def test_never_fits_and_quota_are_refused_at_once(tmp_path, clock):
    services = make_services(tmp_path, clock, extra='\n[[quotas]]\nmax_gpus = 1\n[[quotas]]\nuser = "big"\nmax_gpus = 8\n')
    with pytest.raises(SpawnRefused) as e:
        await take(services, "big", "gpu-4")
    assert e.value.status_code == 409 and "4 whole GPUs asked; this pool has 2" in e.value.message
    with pytest.raises(SpawnRefused) as e:
        await services.allocation.check_start(start_of(services, "small", "gpu-2"))  # the early check
    assert e.value.status_code == 403 and "max_gpus = 1 (set by the default (settings))" in e.value.message
    with pytest.raises(SpawnRefused) as e:
        await take(services, "small", "gpu-2")  # the same rule inside the allocation transaction
    assert e.value.status_code == 403 and "max_gpus = 1 (set by the default (settings))" in e.value.message
    # an admin raises the user's quota in the database: it wins over the file's default
    await services.quotas.set(QuotaRule("user", "small", max_gpus=2, origin="database"), by="admin")
    assert (await take(services, "small", "gpu-2")).mode == "exclusive"
    assert await services.quotas.unset("user", "small", by="admin")
    assert not await services.quotas.unset("user", "small", by="admin")
    assert (await services.quotas.effective("small", [])).max_gpus.value == 1


async def test_reconcile_keeps_running_frees_gone_and_reports_strays(tmp_path, clock, services):
    kept, gone = await take(services, "kept"), await take(services, "gone")
    engine = services.engine
    for name, allocation, running in (("gpuhub-kept", kept.id, True), ("gpuhub-gone", gone.id, False), ("gpuhub-stray", 999, True)):
        cid = engine.docker.create_container("img", name, labels={"org.gpuhub.allocation": str(allocation)}, host_config={})["Id"]
        if running:
            engine.docker.start(cid)
    # a new hub process: new services on the same database and engine
    restarted = Services(services.settings, engine=engine, database=await services.database.get(), clock=clock)
    await restarted.allocation.ready()
    report = restarted.allocation.last_reconcile
    assert (report.kept, report.freed, report.strays) == ([kept.id], [gone.id], ["gpuhub-stray"])
    assert [a.id for a in await restarted.allocation.live()] == [kept.id]


async def test_force_free_releases_once(services):
    a = await take(services, "a")
    assert await services.allocation.still_held(a.id) is True
    assert [x.id for x in await services.allocation.force_free(a.uuids[0], "admin")] == [a.id]
    assert await services.allocation.force_free(a.uuids[0], "admin") == []
    assert await services.allocation.still_held(a.id) is False  # the server's next poll stops it


# --- wake-ups: a change that can let a waiter in wakes the lines, from inside its service ---------------
async def freed_without_a_wake(services, allocation) -> None:
    """The allocation's GPU goes back to the pool through the store alone (as another writer would),
    so nothing has woken the line yet: only the service call under test can."""
    assert AllocationStore(await services.database.get()).release(allocation.id, "freed behind the line's back")


@pytest.mark.parametrize("change", ["quota set", "quota removed", "session saved", "session deleted"])
async def test_a_change_that_can_let_a_waiter_in_wakes_the_line(services, clock, change):
    """A waiter must not sit out the 5 s recheck after a change that may let it in. Before the quota
    and session services owned their wake-ups, the API's quota DELETE woke nobody (the handler forgot
    to): with the wake removed from ``QuotaService.unset``, 'quota removed' times out here."""
    lab = Session("lab", "gpu-1", (Window(clock.now + timedelta(days=1), clock.now + timedelta(days=1, hours=2)),))
    await services.sessions.save(lab, "prof")
    await services.quotas.set(QuotaRule("group", "lab", max_gpus=3, origin="database"), by="admin")
    a = await take(services, "a")
    await take(services, "b")
    waiter = asyncio.ensure_future(take(services, "c"))
    await until(lambda: services.allocation.lines.lines() == {"exclusive×1": ["c"]}, "c in line")
    await freed_without_a_wake(services, a)
    await asyncio.sleep(0.2)
    assert not waiter.done()  # nothing told the line
    if change == "quota set":
        await services.quotas.set(QuotaRule("user", "c", max_gpus=2, origin="database"), by="admin")
    elif change == "quota removed":
        assert await services.quotas.unset("group", "lab", by="admin")
    elif change == "session saved":
        await services.sessions.save(lab, "prof")
    else:
        assert await services.sessions.delete("lab")
    got = await asyncio.wait_for(waiter, 2)  # well inside the 5 s recheck
    assert got.uuids == a.uuids


# --- the accounting rounds: running servers against their weekly GPU-hours --------------------------------
async def test_the_accounting_rounds_warn_then_stop_and_free(tmp_path, clock):
    services = make_services(
        tmp_path, clock,
        extra='\n[[quotas]]\ngpu_hours_per_week = 1\n[accounting]\nrunning_servers = "stop"\nwarn_before = 900\n',
    )
    a = await take(services, "alice")
    accounting, notices = services.accounting, services.notices
    clock.now += timedelta(minutes=30)
    await accounting.check_running()
    assert notices.of("alice") == []  # 30 minutes left: not yet
    clock.now += timedelta(minutes=20)
    await accounting.check_running()
    ((source, notice),) = notices.of("alice")
    assert (source, notice.level) == ("gpu-hours", "warn") and "run out in about 10 minutes" in notice.message
    clock.now += timedelta(minutes=11)
    await accounting.check_running()
    ((source, notice),) = notices.of("alice")
    assert notice.level == "stop" and "your GPU server was stopped" in notice.message
    assert await services.allocation.still_held(a.id) is False  # the next poll stops the server
    await accounting.check_running()
    assert notices.of("alice") == []  # nothing runs any more
    await accounting.refresh_metrics()
    assert accounting.metrics.closed_totals["user"]["alice"] == pytest.approx(61 * 60)
    assert accounting.metrics.open_records == [] and accounting.metrics.live == []


# --- one order across kinds of request, with a bound on overtaking ---------------------------------------
SHARED_PROFILE = '''
[[profiles]]
name = "gpu-shared"
image = "gpuhub/pytorch-cuda:cpu"
gpus = 1
gpu_mode = "shared"
gpu_memory = "10G"
'''


async def test_an_exclusive_request_is_passed_over_at_most_overtake_limit_times(tmp_path, clock):
    """Before one order across lines, every shared request that fitted went ahead of the exclusive one
    waiting for a whole GPU, without end: here s2 would be placed at once."""
    services = make_services(tmp_path, clock, extra="overtake_limit = 1\n" + SHARED_PROFILE)
    await services.allocation.ready()
    await take(services, "a")  # GPU 0, exclusive
    s0 = await take(services, "s0", "gpu-shared")  # a slot on GPU 1
    progress = StartProgress()
    x = asyncio.ensure_future(take(services, "x", progress=progress))
    await until(lambda: progress.message.startswith("waiting"), "x in line")
    assert not x.done() and progress.message == "waiting for a GPU (exclusive×1): 1st of 1 in line"
    s1 = await asyncio.wait_for(take(services, "s1", "gpu-shared"), 5)  # fits beside s0: overtakes x once
    s2 = asyncio.ensure_future(take(services, "s2", "gpu-shared"))
    await asyncio.sleep(0.3)
    assert not s2.done()  # it would fit, but x was passed over once already: GPU 1 is kept for x
    await services.allocation.release(s0.id, "stopped")
    await asyncio.sleep(0.1)
    assert not x.done() and not s2.done()
    await services.allocation.release(s1.id, "stopped")
    got = await asyncio.wait_for(x, 5)  # the whole GPU 1 goes to x, who asked before s2
    assert got.uuids == s1.uuids and not s2.done()
    s2.cancel()


@pytest.mark.parametrize("turns", range(12))
async def test_a_gpu_freed_during_a_round_goes_to_the_earlier_waiter(tmp_path, clock, turns):
    """The release lands ``turns`` loop turns into a round that the waiters are already in: whatever
    the interleaving, the whole GPU goes to x, who asked first, not to the shared requests behind it
    (a placement read the devices before the release, the next one after it: the integration tier's
    test_lines caught that once in a few hundred runs)."""
    services = make_services(tmp_path, clock, extra=SHARED_PROFILE)
    await services.allocation.ready()
    a = await take(services, "a")
    await take(services, "b")
    progress = StartProgress()
    x = asyncio.ensure_future(take(services, "x", progress=progress))
    await until(lambda: progress.message.startswith("waiting"), "x in line")
    shared = [asyncio.ensure_future(take(services, f"s{i}", "gpu-shared")) for i in range(3)]
    await until(lambda: len(services.allocation.waiting()) == 4, "four in line")
    services.allocation.capacity_changed()  # everyone tries again now: a round is under way ...
    for _ in range(turns):
        await asyncio.sleep(0)
    await services.allocation.release(a.id, "stopped")  # ... when the GPU is freed
    got = await asyncio.wait_for(x, 5)
    await asyncio.sleep(0.1)
    assert got.uuids == a.uuids and not any(s.done() for s in shared)
    for task in shared:
        task.cancel()
    await asyncio.gather(*shared, return_exceptions=True)


async def test_a_job_beyond_its_persons_quota_waits_for_their_gpus_holding_nobody_back(tmp_path, clock):
    """A batch job (``waits_for_own``) while its person holds their whole quota waits for their own GPU
    to free, not refused; others behind it in the same line are placed past it; a job beyond the
    quota even with nothing held is refused at once."""
    services = make_services(tmp_path, clock, extra="\n[[quotas]]\nmax_gpus = 1\n")
    await services.allocation.ready()
    mine = await take(services, "a")
    job = dataclasses.replace(start_of(services, "a", server="job/1"), waits_for_own=True)
    progress = StartProgress()
    waiting = asyncio.ensure_future(services.allocation.acquire(job, "a:job/1", progress, job=(clock(), 60)))
    await until(lambda: progress.message.startswith("waiting"), "the job in line")
    assert services.allocation.waiting()[0].reason.startswith("waiting for your own GPUs to free: GPU quota reached")
    other = await asyncio.wait_for(take(services, "b"), 5)  # GPU 1: not kept for a's job
    assert not waiting.done()
    await services.allocation.release(mine.id, "stopped")
    assert (await asyncio.wait_for(waiting, 5)).uuids == mine.uuids
    assert other.uuids != mine.uuids
    two = dataclasses.replace(start_of(services, "c", "gpu-2", server="job/2"), waits_for_own=True)
    with pytest.raises(SpawnRefused) as e:
        await services.allocation.check_start(two)
    assert e.value.status_code == 403 and "max_gpus = 1" in e.value.message


# --- the wait lines survive a hub restart ---------------------------------------------------------------
def running_container(services, name, allocation):
    docker = services.engine.docker
    docker.start(docker.create_container("img", name, labels={"org.gpuhub.allocation": str(allocation.id)}, host_config={})["Id"])


async def test_waiters_left_by_a_stopping_hub_are_served_again_in_order(tmp_path, clock, services):
    for name in ("a", "b"):  # their servers run on: the restarted hub keeps their GPUs
        running_container(services, f"gpuhub-{name}", await take(services, name))
    waiting = {}
    for name in ("c", "d"):
        start = start_of(services, name)
        waiting[name] = asyncio.ensure_future(services.allocation.acquire(start, name, StartProgress(), None, {"profile": "gpu-1"}))
        await until(lambda name=name: name in services.allocation.lines.lines().get("exclusive×1", []), f"{name} in line")
        clock.now += timedelta(seconds=1)
    gone = asyncio.ensure_future(take(services, "e"))  # a start that ends while waiting: not kept
    await until(lambda: services.allocation.lines.lines() == {"exclusive×1": ["c", "d", "e"]}, "c, d, e in line")
    services.allocation.remove_waiting(services.allocation.waiting()[-1].number, "admin")
    with pytest.raises(SpawnRefused):
        await gone
    for task in waiting.values():  # the hub stops: JupyterHub cancels the pending spawns
        task.cancel()
    await asyncio.gather(*waiting.values(), return_exceptions=True)

    # a new hub process on the same database and engine re-serves c and d (asked in reverse order)
    restarted = Services(services.settings, engine=services.engine, database=await services.database.get(), clock=clock)
    progress, tasks, asked = {}, {}, []

    async def start_server(waiter):
        asked.append(waiter.username)
        progress[waiter.username] = StartProgress()
        start = start_of(restarted, waiter.username, waiter.options["profile"])
        tasks[waiter.username] = asyncio.ensure_future(
            restarted.allocation.acquire(start, waiter.username, progress[waiter.username], None, waiter.options)
        )
        await asyncio.sleep(0.05 if waiter.username == "c" else 0)  # d joins the new line first
        return True, ""

    await restarted.allocation.restore_waiters(start_server)
    await until(lambda: len(restarted.allocation.waiting()) == 2 and "1st of 2" in progress["c"].message, "both back in line")
    assert sorted(asked) == ["c", "d"]  # e's start ended on its own: it was not kept
    assert restarted.allocation.lines.lines() == {"exclusive×1": ["c", "d"]}  # their order from before
    assert progress["c"].message == (
        "waiting for a GPU (exclusive×1): 1st of 2 in line (your place was kept across a hub restart)"
    )
    held = await restarted.allocation.live()
    await restarted.allocation.release(held[0].id, "stopped")
    assert (await asyncio.wait_for(tasks["c"], 5)).username == "c" and not tasks["d"].done()
    tasks["d"].cancel()


async def test_a_kept_waiter_the_hub_cannot_start_again_is_forgotten(tmp_path, clock, services):
    await take(services, "a"), await take(services, "b")
    task = asyncio.ensure_future(services.allocation.acquire(start_of(services, "c"), "c", StartProgress(), None, {"profile": "gpu-1"}))
    await until(lambda: services.allocation.waiting(), "c in line")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    restarted = Services(services.settings, engine=services.engine, database=await services.database.get(), clock=clock)

    async def refused(waiter):
        return False, "400: c is already running"

    await restarted.allocation.restore_waiters(refused)
    asked = []

    async def start_server(waiter):
        asked.append(waiter)
        return True, ""

    await restarted.allocation.restore_waiters(start_server)
    assert asked == []


class HubApiSeen:
    """The hub's own API as ``Services.start`` uses it, recording what was asked."""

    def __init__(self):
        self.asked: list[str] = []

    async def wait_until_up(self):
        self.asked.append("up")
        return False  # the hub "did not answer": nothing to re-serve

    async def stop_server(self, user, server):
        return True, ""

    async def post_activity(self, user, server, when):
        pass


async def test_the_hub_re_serves_the_starts_left_waiting_with_ssh_off(tmp_path, clock):
    """The SSH wiring once put the re-serving under ``[ssh] port``: a hub without SSH lost its line."""
    services = make_services(tmp_path, clock)
    api = HubApiSeen()
    services.start(api)
    try:
        await until(lambda: api.asked == ["up"], "the restore to ask the hub")
        assert services.borrowing.stopper == api.stop_server and services.ssh.activity == api.post_activity
    finally:
        for task in services._tasks:
            task.cancel()
        await asyncio.gather(*services._tasks, return_exceptions=True)
