"""GPU-hours arithmetic (pure) and the store's usage records on a real SQLite file with a moved clock."""

from datetime import datetime, timedelta

import pytest

from gpuhub.policy.accounting import (
    OTHERS,
    UsageRecord,
    bounded,
    daily,
    device_share,
    gpu_seconds,
    running_verdict,
    seconds_until_used_up,
    totals,
    week_start,
)
from gpuhub.policy.allocator import GpuRequest
from gpuhub.policy.usagecsv import records_csv
from gpuhub.inventory.file import parse_inventory
from gpuhub.db.records import Allocation
from gpuhub.policy.decide import Refused, SiteRules
from gpuhub.policy.quotas import QuotaRule
from tests.unit.test_inventory import POOL, gpu_uuid, mig_uuid
from tests.unit.conftest import FakeClock

T0 = datetime(2026, 11, 16, 9, 0, 0)  # a Monday
H = timedelta(hours=1)
INV = parse_inventory(POOL, "file:pool.toml")
GiB = 1024**3


def rec(user="alice", groups=("ml",), share=1.0, start=T0, end=T0 + H, i=1):
    return UsageRecord(i, i, user, tuple(groups), "", "gpu-1", gpu_uuid(0), share, start, end)


OVERLAP = [
    # (record start, end, share, window since, until, GPU-seconds)
    (T0, T0 + H, 1.0, T0 - H, T0 + 2 * H, 3600),  # all inside
    (T0, T0 + H, 0.25, T0 - H, T0 + 2 * H, 900),  # a quarter of a GPU
    (T0, T0 + H, 1.0, T0 + H / 2, T0 + 2 * H, 1800),  # clipped at since
    (T0, T0 + H, 1.0, T0 - H, T0 + H / 4, 900),  # clipped at until
    (T0, None, 1.0, T0 - H, T0 + 2 * H, 7200),  # open: runs to until
    (T0, T0 + H, 1.0, T0 + 2 * H, T0 + 3 * H, 0),  # outside
    (T0, T0, 1.0, T0 - H, T0 + H, 0),  # zero length
]


@pytest.mark.parametrize("start, end, share, since, until, seconds", OVERLAP)
def test_gpu_seconds_are_the_overlap_times_the_share(start, end, share, since, until, seconds):
    assert gpu_seconds(rec(share=share, start=start, end=end), since, until) == pytest.approx(seconds)


SHARES = [
    # (UUID, mode, budget, share)
    (gpu_uuid(0), "exclusive", 0, 1.0),
    (gpu_uuid(0), "shared", 20 * GiB, 0.25),  # 20 of 80 GB
    (gpu_uuid(0), "shared", 200 * GiB, 1.0),  # never above one GPU
    (mig_uuid(0), "mig", 0, round(5 / 40, 6)),  # a 5 GB slice of a 40 GB GPU
]


@pytest.mark.parametrize("uuid, mode, budget, share", SHARES)
def test_device_share(uuid, mode, budget, share):
    assert device_share(INV, uuid, mode, budget) == pytest.approx(share)


WEEKS = [
    ("rolling", datetime(2026, 11, 21, 12, 30), datetime(2026, 11, 14, 12, 30)),
    ("calendar", datetime(2026, 11, 21, 12, 30), datetime(2026, 11, 16, 0, 0)),  # Saturday -> Monday
    ("calendar", datetime(2026, 11, 16, 0, 0), datetime(2026, 11, 16, 0, 0)),  # Monday midnight starts a week
]


@pytest.mark.parametrize("week, now, start", WEEKS)
def test_week_start(week, now, start):
    assert week_start(now, week) == start


def test_totals_per_user_and_group_and_daily_bars():
    records = [
        rec("alice", ("ml", "vision"), 1.0, T0, T0 + 2 * H, 1),
        rec("bob", ("ml",), 0.5, T0, T0 + 2 * H, 2),
        rec("carol", (), 1.0, T0 + 24 * H, T0 + 25 * H, 3),
    ]
    since, until = T0 - H, T0 + 48 * H
    assert totals(records, "user", since, until) == {"alice": 7200, "carol": 3600, "bob": 3600}
    # a user in two groups counts in both; a user in none counts in no group
    assert totals(records, "group", since, until) == {"ml": 10800, "vision": 7200}
    bars = daily(records, "user", since, until)
    assert bars["2026-11-16"] == {"alice": 2.0, "bob": 1.0} and bars["2026-11-17"] == {"carol": 1.0}
    assert list(bars) == ["2026-11-16", "2026-11-17", "2026-11-18"]


def test_bounded_labels_sum_the_rest():
    sums = {f"u{i}": float(i) for i in range(10)}
    kept = bounded(sums, 3)
    assert list(kept) == ["u9", "u8", "u7", OTHERS] and kept[OTHERS] == sum(range(7))
    assert bounded(sums, 100) == dict(sorted(sums.items(), key=lambda kv: -kv[1]))


def test_records_csv_escapes_formulas():
    text = records_csv([rec("=cmd()", ("+g",), 1.0, T0, T0 + H)], T0, T0 + 2 * H)
    header, row = text.splitlines()
    assert header.startswith("record,allocation,user,groups")
    assert ",'=cmd(),'+g," in row and row.endswith(",3600,1.0000,,,")  # never measured: no busy figures


VERDICTS = [
    # (used h, limit h, GPUs held, policy, verdict kind or None, fragment)
    (1.0, None, 1, "stop", None, ""),
    (1.0, 10, 1, "off", None, ""),
    (1.0, 10, 1, "stop", None, ""),  # 9 hours left: no word yet
    (9.9, 10, 1, "stop", "warn", "run out in about 6 minutes"),
    (9.9, 10, 2, "warn", "warn", "run out in about 3 minutes at this rate"),
    (10.0, 10, 1, "stop", "stop", "your GPU server was stopped and its GPU freed; your files are kept"),
    (10.5, 10, 1, "warn", "warn", "new GPU starts are refused"),
    (0.0021, 0.002, 1, "stop", "stop", "(0.0021 of 0.002"),
]


@pytest.mark.parametrize("used, limit, held, policy, kind, fragment", VERDICTS)
def test_running_verdict(used, limit, held, policy, kind, fragment):
    verdict = running_verdict(used, limit, held, 900, policy, "rolling")
    if kind is None:
        assert verdict is None
    else:
        assert verdict[0] == kind and fragment in verdict[1], verdict


def test_seconds_until_used_up():
    assert seconds_until_used_up(9, 10, 2) == 1800
    assert seconds_until_used_up(10, 10, 2) == 0
    assert seconds_until_used_up(1, 10, 0) is None


def RULES_WITH(*quota_rules):
    return SiteRules(quota_rules=quota_rules, max_shares=4, week="rolling")


@pytest.fixture
def clock():
    return FakeClock(T0)  # the conftest's ``store`` reads it


def test_a_record_per_device_opened_and_closed_with_the_allocation(store, clock):
    a = store.allocate(INV, GpuRequest("exclusive", 2), "alice", "", "gpu-2", groups=("ml",))
    assert isinstance(a, Allocation)
    shared = store.allocate(INV, GpuRequest("shared", memory_bytes=20 * GiB), "bob", "", "gpu-shared")
    open_records = store.usage.open_records()
    assert sorted((r.username, r.share, r.groups) for r in open_records) == [
        ("alice", 1.0, ("ml",)), ("alice", 1.0, ("ml",)), ("bob", 0.25, ())
    ]
    clock.now = T0 + H
    assert store.usage.used_seconds("alice", T0 - H) == pytest.approx(7200)  # 2 GPUs × 1 h, still open
    assert store.allocations.release(a.id, "server stopped")
    clock.now = T0 + 3 * H
    assert store.usage.used_seconds("alice", T0 - H) == pytest.approx(7200)  # closed: no longer grows
    assert store.usage.used_seconds("alice", T0 + H / 2) == pytest.approx(3600)  # window clips it
    assert store.usage.used_seconds("bob", T0) == pytest.approx(0.25 * 3 * 3600)
    closed = [r for r in store.usage.records(T0, clock.now) if r.username == "alice"]
    assert {(r.end, r.end_reason) for r in closed} == {(T0 + H, "server stopped")}
    # the running totals kept at release: 2 GPUs × 1 h, for alice and for her group
    assert store.usage.closed_totals() == {"user": {"alice": 7200.0}, "group": {"ml": 7200.0}}
    assert shared is not None


def test_reconcile_closes_at_the_last_time_the_server_was_seen(store, clock):
    a = store.allocate(INV, GpuRequest("exclusive"), "alice", "", "gpu-1")
    clock.now = T0 + H
    assert store.allocations.seen(a.id)  # the last poll before the hub went down
    clock.now = T0 + 5 * H  # the hub comes back four hours later; the container is gone
    assert store.allocations.release(a.id, "reconcile: its container is gone", at_last_seen=True)
    (r,) = store.usage.records(T0, clock.now)
    assert r.end == T0 + H and gpu_seconds(r, T0, clock.now) == pytest.approx(3600)
    assert not store.allocations.seen(a.id)  # released: a later poll learns it (and stops the server)


def test_the_weekly_quota_is_checked_in_the_placing_transaction(store, clock):
    first = store.allocate(INV, GpuRequest("exclusive"), "alice", "a", "gpu-1")
    clock.now = T0 + 2 * H
    store.allocations.release(first.id, "server stopped")
    rules = RULES_WITH(QuotaRule("user", "alice", gpu_hours_per_week=2))
    refused = store.allocate(INV, GpuRequest("exclusive"), "alice", "b", "gpu-1", rules=rules)
    assert isinstance(refused, Refused) and "Weekly GPU-hours used up: you used 2.00 of 2 GPU-hours" in refused.message
    # a database rule (an admin raised it) is read inside the same transaction
    store.quotas.set(QuotaRule("user", "alice", gpu_hours_per_week=3, origin="database"))
    raised = store.allocate(INV, GpuRequest("exclusive"), "alice", "b", "gpu-1", rules=rules)
    assert isinstance(raised, Allocation)
    store.allocations.release(raised.id, "server stopped")
    store.quotas.unset("user", "alice")
    # a week later (rolling) the hours have come back
    clock.now = T0 + 8 * 24 * H
    ok = store.allocate(INV, GpuRequest("exclusive"), "alice", "c", "gpu-1", rules=rules)
    assert isinstance(ok, Allocation)
    clock.now += 3 * H
    store.allocations.release(ok.id, "server stopped")
    # the hours are read when only a database rule limits them (the settings' rules do not)
    store.quotas.set(QuotaRule("user", "alice", gpu_hours_per_week=1, origin="database"))
    refused = store.allocate(INV, GpuRequest("exclusive"), "alice", "d", "gpu-1")
    assert isinstance(refused, Refused) and "you used 3.00 of 1 GPU-hours" in refused.message
