"""Borrowing beyond the GPU quota and taking it back: the ``[borrowing]`` table, the quota verdict of a
start that may borrow, the placement that lends, and ``policy.borrowing.to_take_back`` as tables (two
borrowers and one waiter, a class window, a waiter nobody can make room for...); then the services on a
real SQLite file with a fake engine and a clock the test moves: warned, grace period, stopped, the
waiter placed, the warning withdrawn when the waiter leaves, a stop refused while the borrower's server
still starts is tried again."""

import asyncio
from datetime import datetime, timedelta

import pytest

from gpuhub.config.schema import parse_settings
from gpuhub.config.sections import SettingsError
from gpuhub.inventory.file import parse_inventory
from gpuhub.policy.allocator import GpuRequest, change_holdings
from gpuhub.policy.borrowing import Borrower, Wanting, to_take_back
from gpuhub.policy.decide import Start, quota_verdict
from gpuhub.policy.errors import SpawnRefused
from gpuhub.policy.quotas import Held, QuotaRule, resolve
from gpuhub.policy.sessions import Session, Window
from gpuhub.hub.progress import StartProgress
from tests.conftest import BASE_SETTINGS
from tests.unit.test_services import make_services, until

NOW = datetime(2026, 12, 4, 12, 0)
GPU = [f"GPU-00000000-0000-0000-0000-{i:012d}" for i in range(4)]
INVENTORY = parse_inventory("".join(f'[[gpus]]\nuuid = "{u}"\nname = "H100"\nmemory = "80G"\n' for u in GPU), "file:test")
ONE, TWO, SHARED = GpuRequest("exclusive", 1), GpuRequest("exclusive", 2), GpuRequest("shared", 1, 10 * 1024**3)


# --- the [borrowing] table --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "table, fragment",
    [
        ('profiles = ["nope"]', "borrowing.profiles: 'nope' is not a GPU profile. Accepted: gpu-1"),
        ('profiles = ["cpu-small"]', "borrowing.profiles: 'cpu-small' is not a GPU profile"),
        ("grace_period = -1", "borrowing.grace_period"),
        ("lend = true", "borrowing.lend: unknown key"),
    ],
)
def test_a_bad_borrowing_table_is_refused_naming_the_key(table, fragment):
    with pytest.raises(SettingsError) as e:
        parse_settings(BASE_SETTINGS + f"\n[borrowing]\n{table}\n", "site.toml")
    assert fragment in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "profiles, groups, profile, member_of, allowed",
    [
        ([], [], "gpu-1", [], False),  # off by default
        (["gpu-1"], [], "gpu-1", [], True),  # everyone who may use the profile
        (["gpu-1"], [], "cpu-small", [], False),
        (["gpu-1"], ["ml-lab"], "gpu-1", ["physics"], False),
        (["gpu-1"], ["ml-lab"], "gpu-1", ["physics", "ml-lab"], True),
    ],
)
def test_who_may_borrow_which_profile(profiles, groups, profile, member_of, allowed):
    settings = parse_settings(BASE_SETTINGS + f"\n[borrowing]\nprofiles = {profiles!r}\ngroups = {groups!r}\n".replace("'", '"'))
    assert settings.borrowing.allows(profile, member_of) is allowed


# --- the quota verdict of a start that may borrow ---------------------------------------------------------
def start(user="bob", request=ONE, may_borrow=True, session="", profile="gpu-1"):
    return Start(user, "", (), profile, request, 4 * 1024**3, 1.0, session, may_borrow=may_borrow)


@pytest.mark.parametrize(
    "rule, held, may_borrow, used_hours, refused, over",
    [
        (QuotaRule("default", "", max_gpus=1), [], True, None, None, None),  # within quota: no borrowing
        (QuotaRule("default", "", max_gpus=1), [Held("exclusive", 1)], False, None, "GPU quota reached: max_gpus = 1", None),
        (QuotaRule("default", "", max_gpus=1), [Held("exclusive", 1)], True, None, None, "GPU quota reached: max_gpus = 1"),
        (QuotaRule("default", "", max_gpus=0), [], True, None, None, "GPU quota reached: max_gpus = 0"),
        # weekly GPU-hours are never borrowed
        (QuotaRule("default", "", max_gpus=1, gpu_hours_per_week=2), [Held("exclusive", 1)], True, 2.5, "Weekly GPU-hours used up", "GPU quota"),
        # nor another profile, or more memory
        (QuotaRule("default", "", max_gpus=1, profiles=("cpu-small",)), [Held("exclusive", 1)], True, None, "not in your allowed profiles", "GPU"),
    ],
)
def test_a_start_that_may_borrow_goes_beyond_the_gpu_count_only(rule, held, may_borrow, used_hours, refused, over):
    quota = resolve("bob", [], [rule])
    message, beyond = quota_verdict(quota, start(may_borrow=may_borrow), held, None if used_hours is None else used_hours * 3600, "rolling")
    assert (message is None) == (refused is None) and (refused is None or refused in message)
    if refused is None:
        assert (beyond is None) == (over is None) and (over is None or over in beyond)


# --- which borrowers are taken back for which waiters -------------------------------------------------------
def borrower(allocation, gpu, minutes_ago, session="", mode="exclusive", memory=0):
    return Borrower(allocation, f"user{allocation}", "", mode, (GPU[gpu],), memory, NOW - timedelta(minutes=minutes_ago), session)


def holdings(borrowers, within=()):
    """The live holdings: the borrowers' devices and ``within`` ((GPU index, mode, memory)) held within quota."""
    held = {}
    for b in borrowers:
        change_holdings(held, b.devices(), 1)
    change_holdings(held, [(GPU[i], mode, memory) for i, mode, memory in within], 1)
    return list(held.values())


CLASS = Session("ml101", "gpu-1", (Window(NOW - timedelta(hours=1), NOW + timedelta(hours=1)),))
PAST_CLASS = Session("ml100", "gpu-1", (Window(NOW - timedelta(hours=3), NOW - timedelta(hours=2)),))
EXCL = "exclusive"

TABLE = [
    # (what, borrowers, held within quota, waiters' requests in line order, taking already, expected {allocation: waiter})
    ("nobody waits", [borrower(1, 0, 5)], [], [], (), {}),
    ("a free GPU: nobody is taken back", [borrower(1, 0, 5)], [(1, EXCL, 0), (2, EXCL, 0)], [ONE], (), {}),
    ("the only borrower", [borrower(1, 0, 5)], [(1, EXCL, 0), (2, EXCL, 0), (3, EXCL, 0)], [ONE], (), {1: 1}),
    ("two borrowers and one waiter: the newest", [borrower(1, 0, 50), borrower(2, 1, 5)], [(2, EXCL, 0), (3, EXCL, 0)], [ONE], (), {2: 1}),
    ("two borrowers and a waiter for two GPUs: both", [borrower(1, 0, 50), borrower(2, 1, 5)], [(2, EXCL, 0), (3, EXCL, 0)], [TWO], (), {1: 1, 2: 1}),
    ("two borrowers and two waiters: one each", [borrower(1, 0, 50), borrower(2, 1, 5)], [(2, EXCL, 0), (3, EXCL, 0)], [ONE, ONE], (), {2: 1, 1: 2}),
    ("one already warned stays the one", [borrower(1, 0, 50), borrower(2, 1, 5)], [(2, EXCL, 0), (3, EXCL, 0)], [ONE], (1,), {1: 1}),
    ("within quota only: nobody", [], [(0, EXCL, 0), (1, EXCL, 0), (2, EXCL, 0), (3, EXCL, 0)], [ONE], (), {}),
    ("all borrowers would not make room: nobody", [borrower(1, 0, 5)], [(1, EXCL, 0), (2, EXCL, 0), (3, EXCL, 0)], [TWO], (), {}),
    ("a class's borrower in its window: never", [borrower(1, 0, 5, "ml101")], [(1, EXCL, 0), (2, EXCL, 0), (3, EXCL, 0)], [ONE], (), {}),
    ("in a class window, the other borrower", [borrower(1, 0, 50), borrower(2, 1, 5, "ml101")], [(2, EXCL, 0), (3, EXCL, 0)], [ONE], (), {1: 1}),
    ("a class's borrower after its window", [borrower(1, 0, 5, "ml100")], [(1, EXCL, 0), (2, EXCL, 0), (3, EXCL, 0)], [ONE], (), {1: 1}),
    (
        "the newest is left when it would not help",  # GPU 1 keeps a within-quota shared slot beside it
        [borrower(1, 0, 50), borrower(2, 1, 5, mode="shared", memory=10 * 1024**3)],
        [(1, "shared", 10 * 1024**3), (2, EXCL, 0), (3, EXCL, 0)],
        [ONE],
        (),
        {1: 1},
    ),
    (
        "a shared waiter on a full shared GPU",
        [borrower(1, 0, 5, mode="shared", memory=10 * 1024**3)],
        [(0, "shared", 10 * 1024**3)] * 3 + [(1, EXCL, 0), (2, EXCL, 0), (3, EXCL, 0)],
        [SHARED],
        (),
        {1: 1},
    ),
]


@pytest.mark.parametrize("what, borrowers, within, requests, taking, expected", TABLE, ids=[row[0] for row in TABLE])
def test_which_borrowers_are_taken_back(what, borrowers, within, requests, taking, expected):
    waiting = [Wanting(n, start(f"waiter{n}", r, may_borrow=False)) for n, r in enumerate(requests, 1)]
    chosen = to_take_back(INVENTORY, holdings(borrowers, within), borrowers, waiting, [CLASS, PAST_CLASS], NOW, 4, frozenset(taking))
    assert chosen == expected


def test_a_waiter_for_a_class_takes_back_a_borrower_on_its_reserved_gpu():
    reserved = Session("ml102", "gpu-1", (Window(NOW, NOW + timedelta(hours=1)),), devices=(GPU[3],))
    borrowers = [borrower(1, 2, 50), borrower(2, 3, 5 * 60)]  # the older one sits on the class's GPU since before its window
    held = holdings(borrowers, [(0, EXCL, 0), (1, EXCL, 0)])
    student = Wanting(1, start("student", ONE, may_borrow=False, session="ml102"))
    assert to_take_back(INVENTORY, held, borrowers, [student], [reserved], NOW, 4) == {2: 1}


# --- the services: lent, warned, stopped, the waiter placed -------------------------------------------------
BORROWING = """
[[quotas]]
max_gpus = 1

[borrowing]
profiles = ["gpu-1"]
grace_period = 300
"""


def borrowing_services(tmp_path, clock):
    services = make_services(tmp_path, clock, extra=BORROWING)
    stops = []

    async def stopper(user, server):  # as the hub's API would: JupyterHub's stop releases the GPU
        stops.append(f"{user}:{server}")
        if user in refuse_stop:
            return False, "400: bob is pending spawn, please wait"
        (allocation,) = [a for a in await services.allocation.live() if (a.username, a.server_name) == (user, server)]
        await services.allocation.release(allocation.id, "server stopped")
        return True, ""

    refuse_stop: set[str] = set()
    services.borrowing.stopper = stopper
    return services, stops, refuse_stop


def start_for(services, user, server=""):
    s = services.settings
    return Start(user, server, (), "gpu-1", GpuRequest("exclusive", 1), s.profile("gpu-1").mem_limit, 1.0, may_borrow=s.borrowing.allows("gpu-1", []))


async def acquire(services, user, server=""):
    return await services.allocation.acquire(start_for(services, user, server), f"{user}:{server}", StartProgress())


async def test_a_borrower_is_warned_given_its_grace_then_stopped_for_a_waiter_within_quota(tmp_path, clock):
    services, stops, refuse_stop = borrowing_services(tmp_path, clock)
    await services.allocation.ready()
    own = await acquire(services, "bob")
    lent = await acquire(services, "bob", "second")  # beyond max_gpus = 1, while GPU 2 sat free
    assert (own.borrowed, lent.borrowed) == (False, True)
    progress = StartProgress()
    waiter = asyncio.ensure_future(services.allocation.acquire(start_for(services, "alice"), "alice", progress))
    await until(lambda: progress.message.startswith("waiting"), "alice in line")
    stop_at = f"{clock.now + timedelta(minutes=5):%H:%M} UTC"
    refuse_stop.add("bob")  # as JupyterHub answers while the borrower's server still starts
    await services.borrowing.review()
    ((source, notice),) = services.notices.of("bob")
    assert (source, notice.level) == ("borrowing", "warn")
    assert "runs on a borrowed GPU" in notice.message and f"stopped at {stop_at} (in 5 min)" in notice.message
    assert services.borrowing.stop_times() == {lent.id: clock.now + timedelta(minutes=5)}
    clock.now += timedelta(minutes=4)
    await services.borrowing.review()
    assert stops == [] and not waiter.done()  # the grace period runs
    await until(lambda: "a borrowed GPU is taken back" in progress.message, "the estimate counts the stop")
    assert "a GPU likely frees in about 1 minutes" in progress.message or "within a minute" in progress.message
    clock.now += timedelta(minutes=1)
    await services.borrowing.review()
    assert stops == ["bob:second"] and not waiter.done()  # refused: tried again at the next review
    refuse_stop.clear()
    await services.borrowing.review()
    placed = await asyncio.wait_for(waiter, 5)
    assert placed.uuids == lent.uuids and not placed.borrowed
    assert [a.id for a in await services.allocation.live()] == [own.id, placed.id]  # bob's own server kept
    ((source, notice),) = services.notices.of("bob")
    assert notice.level == "stop" and f"was stopped at {stop_at}" in notice.message and "files are kept" in notice.message
    await services.borrowing.review()
    assert services.borrowing.taking == {}


async def test_no_gpu_is_lent_while_someone_waits_for_it_and_a_borrower_never_waits(tmp_path, clock):
    services, stops, _ = borrowing_services(tmp_path, clock)
    await services.allocation.ready()
    await acquire(services, "bob"), await acquire(services, "carol")
    with pytest.raises(SpawnRefused) as e:
        await acquire(services, "bob", "second")  # both GPUs held: nothing to borrow
    assert e.value.status_code == 403 and "No GPU can be borrowed beyond it now: 0 of 2 whole GPUs free" in e.value.message
    waiting = asyncio.ensure_future(acquire(services, "dave"))
    await until(lambda: services.allocation.lines.lines(), "dave in line")
    with pytest.raises(SpawnRefused) as e:
        await acquire(services, "carol", "second")
    assert "No GPU can be borrowed beyond it now: others are waiting for these GPUs" in e.value.message
    waiting.cancel()


async def test_the_warning_is_withdrawn_when_the_waiter_leaves(tmp_path, clock):
    services, stops, _ = borrowing_services(tmp_path, clock)
    await services.allocation.ready()
    await acquire(services, "bob")
    await acquire(services, "bob", "second")
    waiter = asyncio.ensure_future(acquire(services, "alice"))
    await until(lambda: services.allocation.lines.lines(), "alice in line")
    await services.borrowing.review()
    assert services.notices.of("bob")[0][1].level == "warn"
    waiter.cancel()
    await until(lambda: not services.allocation.lines.lines(), "alice gone")
    clock.now += timedelta(minutes=10)
    await services.borrowing.review()
    assert services.notices.of("bob") == [] and stops == [] and services.borrowing.taking == {}
    assert sum(a.borrowed for a in await services.allocation.live()) == 1  # bob keeps the borrowed GPU
