"""The estimate of a wait (``policy.estimate``) as tables: typical hold lengths from the records, each
hold's expected end from its limits, the waiter's estimate from its place; and on the hub's services
(a real SQLite file, the fake engine, a clock the test moves): the spawn page's message and the
ticket's estimate from the server age limit, a session's window and the weekly GPU-hours."""

import asyncio
from datetime import datetime, timedelta

import pytest

from gpuhub.hub.progress import StartProgress
from gpuhub.policy.accounting import UsageRecord, weekly
from gpuhub.policy.estimate import Estimate, Hold, estimate, expected_end, typical_holds
from tests.unit.test_services import make_services, start_of, until

NOW = datetime(2026, 3, 2, 12, 0, 0)
M = timedelta(minutes=1)


def closed(allocation_id, minutes, profile="gpu-1", ended=NOW - M):
    return UsageRecord(allocation_id, allocation_id, "u", (), "", profile, f"GPU-{allocation_id}", 1.0, ended - minutes * M, ended)


@pytest.mark.parametrize(
    "records, expected",
    [
        ([closed(1, 10), closed(2, 20), closed(3, 30)], {"gpu-1": 20 * M}),
        ([closed(1, 10), closed(2, 20)], {}),  # too few to say
        ([closed(1, 10), closed(1, 10), closed(2, 20), closed(3, 60), closed(4, 60)], {"gpu-1": 40 * M}),  # a 2-GPU hold counts once
        ([closed(1, 10), closed(2, 20), closed(3, 30, ended=NOW - timedelta(days=40))], {}),  # older than four weeks
        ([closed(1, 10), closed(2, 20), closed(3, 30, profile="gpu-2")], {}),
        ([closed(1, 10), closed(2, 20), UsageRecord(3, 3, "u", (), "", "gpu-1", "GPU-3", 1.0, NOW - 5 * M, None)], {}),  # open: not a length
    ],
)
def test_typical_holds(records, expected):
    assert typical_holds(records, NOW) == expected


TYPICAL = {"gpu-1": 30 * M}


@pytest.mark.parametrize(
    "hold, expected",
    [
        (Hold(NOW - 10 * M, 1, "gpu-1"), (NOW + 20 * M, "gpu-1 is usually held 30 min")),
        (Hold(NOW - 40 * M, 1, "gpu-1"), None),  # past its usual length: nothing known
        (Hold(NOW - 10 * M, 1, "other"), None),  # no history
        (Hold(NOW - 10 * M, 1, "gpu-1", ((NOW + 5 * M, "session s's window ends"),)), (NOW + 5 * M, "session s's window ends")),
        (Hold(NOW - 10 * M, 1, "gpu-1", ((NOW + 50 * M, "max age"),)), (NOW + 20 * M, "gpu-1 is usually held 30 min")),
        (Hold(NOW - 40 * M, 1, "other", ((NOW - 1 * M, "max age"),)), (NOW, "max age")),  # overdue: any moment
        (Hold(NOW, 1, "other", ((NOW + 9 * M, "b"), (NOW + 7 * M, "a"))), (NOW + 7 * M, "a")),
    ],
)
def test_expected_end(hold, expected):
    assert expected_end(hold, TYPICAL, NOW) == expected


HOLDS = [
    Hold(NOW, 1, "x", ((NOW + 30 * M, "third"),)),
    Hold(NOW, 1, "x", ((NOW + 10 * M, "first"),)),
    Hold(NOW, 2, "x", ((NOW + 20 * M, "second, two GPUs"),)),
    Hold(NOW, 1, "x"),  # unknown end
]


@pytest.mark.parametrize(
    "units, ahead, expected",
    [
        (1, 0, Estimate(NOW + 10 * M, "first")),
        (1, 1, Estimate(NOW + 20 * M, "second, two GPUs")),
        (1, 2, Estimate(NOW + 20 * M, "second, two GPUs")),  # the two-GPU hold frees two
        (2, 0, Estimate(NOW + 20 * M, "second, two GPUs")),
        (1, 3, Estimate(NOW + 30 * M, "third")),
        (1, 4, Estimate(None)),  # more than the known ends
        (0, 0, Estimate(None)),
    ],
)
def test_estimate(units, ahead, expected):
    assert estimate(HOLDS, {}, NOW, units, ahead) == expected


@pytest.mark.parametrize(
    "estimate_, expected",
    [
        (Estimate(NOW + 25 * M, "why"), "a GPU likely frees in about 25 minutes (why)"),
        (Estimate(NOW + timedelta(seconds=30), "why"), "a GPU likely frees within a minute (why)"),
        (Estimate(NOW + 180 * M, "why"), "a GPU likely frees in about 3.0 hours (why)"),
        (Estimate(None), "no estimate yet (the GPUs' holders have no known end)"),
    ],
)
def test_estimate_text(estimate_, expected):
    assert estimate_.text(NOW) == expected


async def waiting(services, user):
    progress = StartProgress()
    task = asyncio.ensure_future(services.allocation.acquire(start_of(services, user), user, progress))
    await until(lambda: progress.message.startswith("waiting for a GPU"), f"{user} in line")
    return task, progress


async def test_the_spawn_page_says_when_a_gpu_likely_frees_from_the_server_age_limit(tmp_path, clock):
    services = make_services(tmp_path, clock, extra="\n[culling]\nmax_age = 3600\n")
    await services.allocation.ready()
    await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())
    clock.now += 10 * M
    await services.allocation.acquire(start_of(services, "b"), "b", StartProgress())
    clock.now += 10 * M
    first, first_progress = await waiting(services, "c")
    second, second_progress = await waiting(services, "d")
    services.allocation.capacity_changed()  # c's message again, now that d is behind it
    await until(lambda: "1st of 2" in first_progress.message, "c's message with d behind it")
    assert first_progress.message == (
        "waiting for a GPU (exclusive×1): 1st of 2 in line;"
        " a GPU likely frees in about 40 minutes (servers are stopped at their maximum age)"
    )
    assert second_progress.message.endswith("2nd of 2 in line; a GPU likely frees in about 50 minutes (servers are stopped at their maximum age)")
    (ticket_d,) = [t for t in services.allocation.waiting() if t.person == "d"]
    assert ticket_d.estimate.seconds(clock()) == 50 * 60
    for task in (first, second):
        task.cancel()
    await asyncio.gather(first, second, return_exceptions=True)


async def test_no_known_end_no_estimate_in_the_message(tmp_path, clock):
    services = make_services(tmp_path, clock)
    await services.allocation.ready()
    await services.allocation.acquire(start_of(services, "a"), "a", StartProgress())
    await services.allocation.acquire(start_of(services, "b"), "b", StartProgress())
    task, progress = await waiting(services, "c")
    assert progress.message == "waiting for a GPU (exclusive×1): 1st of 1 in line"
    (ticket,) = services.allocation.waiting()
    assert ticket.estimate == Estimate(None)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --- the home page's GPU-hours per week (policy.accounting.weekly) ---------------------------------
MONDAY = datetime(2026, 3, 2, 0, 0)  # a Monday


@pytest.mark.parametrize(
    "records, now, week, expected",
    [
        # rolling weeks end now; a record across two weeks is split between them
        ([closed(1, 120, ended=NOW - timedelta(days=7) + 60 * M)], NOW, "rolling", [(NOW - timedelta(days=14), 1.0), (NOW - timedelta(days=7), 1.0)]),
        # calendar weeks start on Monday 00:00; this week to now
        ([closed(1, 60, ended=MONDAY + 2 * 60 * M)], MONDAY + timedelta(hours=5), "calendar",
         [(MONDAY - timedelta(days=7), 0.0), (MONDAY, 1.0)]),
        # an open record counts to now
        ([UsageRecord(1, 1, "u", (), "", "gpu-1", "GPU-1", 0.5, NOW - 120 * M, None)], NOW, "rolling",
         [(NOW - timedelta(days=14), 0.0), (NOW - timedelta(days=7), 1.0)]),
        ([], NOW, "rolling", [(NOW - timedelta(days=14), 0.0), (NOW - timedelta(days=7), 0.0)]),
    ],
)
def test_weekly_hours(records, now, week, expected):
    got = weekly(records, now, week, 2)
    assert [(start, round(hours, 6)) for start, hours in got] == expected
