"""Fair share (``policy.fairness``, ``[fairness]``): the decayed GPU-hours, the priorities, the order of
the lines as tables; and on the hub's services (a real SQLite file, the fake engine, a clock the test
moves): a light user waiting behind a heavy one gets the freed GPU first, one person's second start
waits behind everyone's first, and the admin's queue view says why."""

import asyncio
import math
from datetime import datetime, timedelta

import pytest

from gpuhub.hub.progress import StartProgress
from gpuhub.hub.waitqueue import WaitQueue
from gpuhub.policy.accounting import UsageRecord
from gpuhub.policy.fairness import FAIR_SHARE, FIFO, Standing, decayed_gpu_hours, order_key, priority_of, reason
from gpuhub.policy.sessions import Session, Window
from gpuhub.web.views import queue_rows
from tests.unit.test_services import make_services, start_of, until

NOW = datetime(2026, 3, 2, 12, 0, 0)
H = timedelta(hours=1)
FULL_HOUR_NOW = 0.5 / math.log(2)  # one GPU-hour ending now, half-life one hour: ∫ 2^-t dt over the last hour


def record(user, start, end, share=1.0):
    return UsageRecord(1, 1, user, (), "", "gpu-1", "GPU-x", share, start, end)


@pytest.mark.parametrize(
    "records, half_life, expected",
    [
        ([record("a", NOW - H, NOW)], 1, {"a": FULL_HOUR_NOW}),
        ([record("a", NOW - 2 * H, NOW - H)], 1, {"a": FULL_HOUR_NOW / 2}),  # one half-life older: half
        ([record("a", NOW - H, None)], 1, {"a": FULL_HOUR_NOW}),  # still held: counted to now
        ([record("a", NOW - H, NOW + 5 * H)], 1, {"a": FULL_HOUR_NOW}),  # after now: nothing
        ([record("a", NOW - H, NOW, share=0.25)], 1, {"a": FULL_HOUR_NOW / 4}),  # a quarter of a GPU
        ([record("a", NOW - H, NOW), record("a", NOW - H, NOW)], 1, {"a": 2 * FULL_HOUR_NOW}),  # two GPUs
        ([record("a", NOW - H, NOW), record("b", NOW - 3 * H, NOW - 2 * H)], 1, {"a": FULL_HOUR_NOW, "b": FULL_HOUR_NOW / 4}),
        ([record("a", NOW, NOW)], 1, {}),  # nothing held
        ([record("a", NOW - H, NOW)], 10_000, {"a": pytest.approx(1.0, rel=1e-3)}),  # a long half-life: plain hours
    ],
)
def test_decayed_gpu_hours(records, half_life, expected):
    got = decayed_gpu_hours(records, NOW, half_life)
    assert got == (expected if any(isinstance(v, type(pytest.approx(1))) for v in expected.values())
                   else {k: pytest.approx(v) for k, v in expected.items()})


@pytest.mark.parametrize(
    "groups, session, group_priority, session_priority, expected",
    [
        ((), "", {}, 0, (0, "")),
        (("ml-lab",), "", {"ml-lab": 10}, 0, (10, "group ml-lab")),
        (("ml-lab", "staff"), "", {"ml-lab": 10, "staff": 20}, 0, (20, "group staff")),  # the highest
        (("a", "b"), "", {"a": 5, "b": 5}, 0, (5, "group a")),  # a tie: the group that sorts first
        (("ml-lab",), "cs101", {"ml-lab": 10}, 100, (100, "session cs101")),
        (("ml-lab",), "cs101", {"ml-lab": 100}, 100, (100, "session cs101")),  # a tie goes to the session
        (("ml-lab",), "cs101", {"ml-lab": 200}, 100, (200, "group ml-lab")),
        ((), "cs101", {}, 0, (0, "")),  # sessions have no priority unless set
        (("other",), "", {"ml-lab": 10}, 0, (0, "")),
    ],
)
def test_priority_of(groups, session, group_priority, session_priority, expected):
    assert priority_of(groups, session, group_priority, session_priority) == expected


# (person, recent GPU-hours, priority) in arrival order → the expected order of fair share
@pytest.mark.parametrize(
    "waiters, expected",
    [
        ([("heavy", 9.0, 0), ("light", 1.0, 0)], ["light", "heavy"]),
        ([("light", 1.0, 0), ("heavy", 9.0, 0)], ["light", "heavy"]),
        ([("a", 2.0, 0), ("b", 2.0, 0)], ["a", "b"]),  # equal: arrival
        ([("heavy", 9.0, 10), ("light", 1.0, 0)], ["heavy", "light"]),  # priority before usage
        # one person counts once: their second start goes behind everyone's first, whatever the hours
        ([("multi", 0.0, 0), ("multi", 0.0, 0), ("heavy", 9.0, 0)], ["multi", "heavy", "multi"]),
        ([("multi", 0.0, 0), ("multi", 0.0, 0), ("multi", 0.0, 0), ("b", 5.0, 0), ("b", 5.0, 0)],
         ["multi", "b", "multi", "b", "multi"]),
        # ...but priority still goes first
        ([("multi", 0.0, 10), ("multi", 0.0, 10), ("heavy", 9.0, 0)], ["multi", "multi", "heavy"]),
    ],
)
def test_fair_share_order_of_a_line(waiters, expected):
    queue = WaitQueue(lambda: NOW, FAIR_SHARE)
    for i, (person, hours, priority) in enumerate(waiters):
        ticket = queue.join("exclusive×1", f"{person}:{i}", since=NOW + i * timedelta(seconds=1), person=person)
        ticket.standing = Standing(priority, "group g" if priority else "", hours)
    queue.reorder()
    assert [t.person for t in queue.in_order()] == expected
    assert [h.split(":")[0] for h in queue.lines()["exclusive×1"]] == expected
    first = queue.in_order()[0]
    assert queue.position(first) == (1, len(waiters))


def test_fifo_ignores_the_standings():
    queue = WaitQueue(lambda: NOW, FIFO)
    for i, (person, hours) in enumerate([("heavy", 9.0), ("light", 0.0), ("heavy", 9.0)]):
        ticket = queue.join("exclusive×1", f"{person}:{i}", since=NOW + i * timedelta(seconds=1), person=person)
        ticket.standing = Standing(0, "", hours)
    queue.reorder()
    assert queue.lines() == {"exclusive×1": ["heavy:0", "light:1", "heavy:2"]}
    assert {queue.why_here(t) for t in queue.tickets()} == {"arrival order"}


@pytest.mark.parametrize(
    "standing, nth, expected",
    [
        (Standing(0, "", 2.25), 0, "priority 0; 2.2 recent GPU-hours"),
        (Standing(10, "group ml-lab", 0.0), 0, "priority 10 (group ml-lab); 0.0 recent GPU-hours"),
        (Standing(0, "", 1.0), 1, "priority 0; their start no. 2 in line: behind everyone's no. 1; 1.0 recent GPU-hours"),
    ],
)
def test_reason(standing, nth, expected):
    assert reason(FAIR_SHARE, standing, nth) == expected
    assert reason(FIFO, standing, nth) == "arrival order"
    assert order_key(FIFO, NOW, 3, standing, nth) == (NOW, 3)


async def wait_in_line(services, user, server=""):
    start = start_of(services, user, server=server)
    progress = StartProgress()
    task = asyncio.ensure_future(services.allocation.acquire(start, f"{user}:{server}" if server else user, progress))
    await until(lambda: progress.message.startswith("waiting for a GPU"), f"{user} in line")
    return task, progress


async def test_a_light_user_gets_the_freed_gpu_before_a_heavy_one_who_waited_longer(tmp_path, clock):
    services = make_services(tmp_path, clock, extra='\n[fairness]\npolicy = "fair-share"\nhalf_life_hours = 24\n')
    await services.allocation.ready()
    first = await services.allocation.acquire(start_of(services, "heavy"), "heavy", StartProgress())
    clock.now += timedelta(hours=10)  # heavy held a GPU for 10 hours
    await services.allocation.release(first.id, "stopped")
    a = await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())
    b = await services.allocation.acquire(start_of(services, "b"), "b", StartProgress())

    heavy, _ = await wait_in_line(services, "heavy")  # first in line by arrival
    light, _ = await wait_in_line(services, "light")
    await services.allocation.update_standings()
    assert services.allocation.lines.lines() == {"exclusive×1": ["light", "heavy"]}
    rows = {r["holder"]: r for r in queue_rows(services.allocation.lines, clock())}
    assert rows["light"]["position"] == 1 and rows["heavy"]["position"] == 2
    assert rows["light"]["order"] == "priority 0; 0.0 recent GPU-hours"
    assert rows["heavy"]["order"].startswith("priority 0; 8.") and rows["heavy"]["order"].endswith("recent GPU-hours")

    await services.allocation.release(b.id, "stopped")
    got = await asyncio.wait_for(light, 5)
    assert got.uuids == b.uuids and not heavy.done()
    await services.allocation.release(a.id, "stopped")
    assert (await asyncio.wait_for(heavy, 5)).uuids == a.uuids


async def test_one_persons_second_start_waits_behind_everyones_first(tmp_path, clock):
    services = make_services(tmp_path, clock, extra='\n[fairness]\npolicy = "fair-share"\n')
    await services.allocation.ready()
    a = await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())
    await services.allocation.acquire(start_of(services, "b"), "b", StartProgress())
    one, _ = await wait_in_line(services, "multi", "one")
    two, _ = await wait_in_line(services, "multi", "two")
    other, _ = await wait_in_line(services, "other")
    await services.allocation.update_standings()
    assert services.allocation.lines.lines() == {"exclusive×1": ["multi:one", "other", "multi:two"]}
    await services.allocation.release(a.id, "stopped")
    await asyncio.wait_for(one, 5)
    assert not other.done() and not two.done()
    for task in (two, other):
        task.cancel()
    await asyncio.gather(two, other, return_exceptions=True)


async def test_hours_are_read_again_when_someone_joins_within_the_minute(tmp_path, clock):
    """heavy waited once before using a GPU (0 hours read then), used one for 30 s, and asks again
    within the minute the hours are kept: their hours are read again as they join, so light, who used
    nothing, goes first."""
    services = make_services(tmp_path, clock, extra='\n[fairness]\npolicy = "fair-share"\nhalf_life_hours = 1\n')
    await services.allocation.ready()
    a = await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())
    await services.allocation.acquire(start_of(services, "b"), "b", StartProgress())
    early, _ = await wait_in_line(services, "heavy")  # read: 0 hours
    await services.allocation.release(a.id, "stopped")
    used = await asyncio.wait_for(early, 5)
    clock.now += timedelta(seconds=30)
    await services.allocation.release(used.id, "stopped")
    await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())  # both held again
    heavy, _ = await wait_in_line(services, "heavy")
    light, _ = await wait_in_line(services, "light")
    await services.allocation.update_standings()
    assert services.allocation.lines.lines() == {"exclusive×1": ["light", "heavy"]}
    for task in (heavy, light):
        task.cancel()
    await asyncio.gather(heavy, light, return_exceptions=True)


async def test_a_class_start_goes_first_only_while_its_window_is_open(tmp_path, clock):
    services = make_services(tmp_path, clock, extra='\n[fairness]\npolicy = "fair-share"\nsession_priority = 100\n')
    await services.allocation.ready()
    await services.sessions.save(Session("ml101", "gpu-1", (Window(clock.now, clock.now + timedelta(hours=1)),)), "prof")
    await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())
    await services.allocation.acquire(start_of(services, "b"), "b", StartProgress())
    other, _ = await wait_in_line(services, "other")
    progress = StartProgress()
    student = asyncio.ensure_future(services.allocation.acquire(start_of(services, "student", session="ml101"), "student", progress))
    await until(lambda: progress.message.startswith("waiting for a GPU"), "student in line")
    await services.allocation.update_standings()
    assert services.allocation.lines.lines() == {"exclusive×1": ["student", "other"]}
    assert queue_rows(services.allocation.lines, clock())[0]["order"].startswith("priority 100 (session ml101)")
    clock.now += timedelta(hours=1, minutes=1)  # the class is over; the student still waits
    await services.allocation.update_standings()
    assert services.allocation.lines.lines() == {"exclusive×1": ["other", "student"]}  # arrival again
    for task in (other, student):
        task.cancel()
    await asyncio.gather(other, student, return_exceptions=True)
