"""GPU-hours held against busy: the arithmetic as tables (``policy.efficiency``), the usage store's
readings on a real SQLite file with a moved clock (gaps capped, shares, the totals kept at release),
the CSV columns, the readings payload refused field by field, and the held-but-idle list of the
accounting service."""

from datetime import datetime, timedelta

import pytest

from gpuhub.db.records import Allocation
from gpuhub.policy.accounting import UsageRecord
from gpuhub.policy.allocator import GpuRequest
from gpuhub.policy.efficiency import Efficiency, efficiency, readings, record_busy, sampled
from gpuhub.policy.usagecsv import totals_csv
from gpuhub.web.payloads import BadRequest, parse_readings
from tests.unit.conftest import GiB
from tests.unit.test_accounting import INV
from gpuhub.hub.progress import StartProgress
from tests.unit.test_services import make_services, start_of

T0 = datetime(2026, 12, 1, 9, 0)
H = timedelta(hours=1)


def rec(user, groups=(), share=1.0, hours=2, observed=0.0, busy=0.0, simulated=False, end=True):
    return UsageRecord(1, 1, user, groups, "", "gpu-1", "GPU-x", share, T0, T0 + hours * H if end else None,
                       observed_seconds=observed, busy_seconds=busy, activity_simulated=simulated)


@pytest.mark.parametrize(
    "last, now, gap, seconds",
    [
        (T0, T0 + timedelta(seconds=60), 120, 60),
        (T0, T0 + timedelta(seconds=600), 120, 120),  # readings paused: not guessed at
        (T0, T0 - timedelta(seconds=5), 120, 0),  # a clock that went back
    ],
)
def test_a_reading_stands_for_the_time_since_the_previous_one_at_most_the_gap(last, now, gap, seconds):
    assert sampled(last, now, gap) == seconds


@pytest.mark.parametrize(
    "record, since, until, expected",
    [
        (rec("a", observed=3600, busy=900), T0, T0 + 4 * H, (7200, 7200, 1800)),  # a quarter busy
        (rec("a", observed=3600, busy=900), T0 + H, T0 + 4 * H, (3600, 3600, 900)),  # clipped, same share
        (rec("a"), T0, T0 + 4 * H, (7200, 0, 0)),  # never measured: held, not measured
        (rec("a", share=0.25, observed=900, busy=900), T0, T0 + 4 * H, (1800, 1800, 1800)),  # all busy
    ],
)
def test_busy_seconds_of_a_record_in_a_range(record, since, until, expected):
    assert record_busy(record, since, until) == pytest.approx(expected)


def test_held_against_busy_per_user_and_group_and_where_the_readings_came_from():
    records = [
        rec("ana", ("ml",), observed=3600, busy=3600),
        rec("ben", ("ml", "cv"), observed=7200, busy=0),
        rec("ben", ("ml", "cv"), hours=1),  # a server without readings
    ]
    by_user = efficiency(records, "user", T0, T0 + 4 * H)
    assert list(by_user) == ["ben", "ana"]  # the most held first
    assert by_user["ben"] == Efficiency(3 * 3600, 7200, 0) and by_user["ben"].busy_share == 0
    assert by_user["ana"].busy_share == 1 and by_user["ana"].as_json()["busy_gpu_hours"] == 2
    by_group = efficiency(records, "group", T0, T0 + 4 * H)
    assert by_group["ml"].busy_share == pytest.approx(0.5) and by_group["cv"].busy_share == 0
    assert Efficiency(3600, 0, 0).busy_share is None
    assert readings(records) == "nvml" and readings([rec("a")]) == "none"
    assert readings([*records, rec("c", observed=1, simulated=True)]) == "mixed"
    assert totals_csv(by_user, "user").splitlines() == [
        "user,gpu_seconds,gpu_hours,measured_gpu_hours,busy_gpu_hours,busy_share",
        "ben,10800,3.0000,2.0000,0.0000,0.0000",
        "ana,7200,2.0000,2.0000,2.0000,1.0000",
    ]


def test_the_store_counts_readings_by_share_caps_gaps_and_keeps_totals_at_release(store, clock):
    whole = store.allocate(INV, GpuRequest("exclusive"), "ana", "", "gpu-1", groups=("ml",))
    shared = store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), "ben", "", "gpu-shared")
    assert isinstance(whole, Allocation) and isinstance(shared, Allocation)
    start = clock.now
    clock.now = start + timedelta(seconds=60)
    samples = [(whole.id, whole.uuids[0], True), (shared.id, shared.uuids[0], False), (999, "GPU-gone", True)]
    assert store.usage.record_activity(samples, True, 120.0) == 2  # a released or unknown allocation: nothing
    clock.now = start + timedelta(seconds=60 + 600)  # the agent was away: 120 s counted, not 600
    assert store.usage.record_activity([(whole.id, whole.uuids[0], False)], True, 120.0) == 1
    by_user = {r.username: r for r in store.usage.open_records()}
    assert (by_user["ana"].observed_seconds, by_user["ana"].busy_seconds, by_user["ana"].activity_simulated) == (180, 60, True)
    assert (by_user["ben"].observed_seconds, by_user["ben"].busy_seconds) == (pytest.approx(15), 0)  # 60 s × 0.25
    assert store.allocations.release(whole.id, "server stopped")
    assert store.usage.closed_activity()["user"]["ana"] == (180, 60)
    assert store.usage.closed_activity()["group"]["ml"] == (180, 60)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"devices": []}, "simulated"),
        ({"simulated": "yes", "devices": []}, "simulated"),
        ({"simulated": True, "devices": {}}, "devices"),
        ({"simulated": True, "devices": [{"allocation": 1, "uuid": "GPU-a"}]}, "devices[0]"),
        ({"simulated": True, "devices": [{"allocation": 0, "uuid": "GPU-a", "busy": True}]}, "devices[0].allocation"),
        ({"simulated": True, "devices": [{"allocation": True, "uuid": "GPU-a", "busy": True}]}, "devices[0].allocation"),
        ({"simulated": True, "devices": [{"allocation": 1, "uuid": "<script>", "busy": True}]}, "devices[0].uuid"),
        ({"simulated": True, "devices": [{"allocation": 1, "uuid": "GPU-a", "busy": 1}]}, "devices[0].busy"),
        ({"simulated": True, "devices": [], "extra": 1}, "extra"),
        ({"simulated": True, "devices": [], "": 1}, "body"),
    ],
)
def test_a_bad_readings_payload_is_refused_naming_the_field(body, field):
    with pytest.raises(BadRequest) as e:
        parse_readings(body)
    assert e.value.field == field


async def test_the_held_but_idle_list_is_who_was_idle_at_the_latest_reading(tmp_path, clock):
    services = make_services(tmp_path, clock)
    await services.allocation.ready()
    start = lambda user: services.allocation.acquire(start_of(services, user), user, StartProgress())
    busy_one, idle_one = await start("busy"), await start("idle")
    accounting = services.accounting
    clock.now += timedelta(minutes=1)
    await accounting.record_activity([(busy_one.id, busy_one.uuids[0], True), (idle_one.id, idle_one.uuids[0], False)], True)
    clock.now += timedelta(minutes=1)
    await accounting.record_activity([(busy_one.id, busy_one.uuids[0], False), (idle_one.id, idle_one.uuids[0], False)], True)
    idle = await accounting.idle_holders()
    first_reading = clock.now - timedelta(minutes=1)  # idle: since the first reading that saw it (no guess before)
    assert [(h.user, h.idle_since) for h in idle] == [("busy", first_reading), ("idle", first_reading)]
    assert idle[1].simulated and idle[1].as_json(clock.now)["idle_seconds"] == 60
    clock.now += timedelta(minutes=10)  # no reading since: not listed on a guess
    assert await accounting.idle_holders() == []
