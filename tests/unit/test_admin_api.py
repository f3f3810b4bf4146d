"""The admin API's pure parts as tables: payload validation (a 400 naming the field), device and queue
rows, and the Prometheus snapshot."""

import json
from datetime import datetime, timedelta

import pytest

from gpuhub.policy.accounting import UsageRecord
from gpuhub.hub.accounting import MetricsInputs
from gpuhub.web.metrics import snapshot
from gpuhub.web.payloads import BadRequest, parse_json_object, parse_quota, parse_range, parse_target
from gpuhub.web.views import device_rows, queue_rows
from gpuhub.inventory.file import parse_inventory
from gpuhub.db.records import Allocation
from gpuhub.hub.waitqueue import WaitQueue
from tests.unit.test_inventory import POOL, gpu_uuid, mig_uuid

PROFILES = ["cpu", "gpu-1", "gpu-shared"]
NOW = datetime(2026, 11, 21, 12, 0)
INV = parse_inventory(POOL, "file:pool.toml")

GOOD = [
    ({"max_gpus": 2}, {"max_gpus": 2}),
    ({"gpu_hours_per_week": 40, "max_memory": "64G", "max_cpus": 8.5}, {"gpu_hours_per_week": 40.0, "max_memory": 64 * 1024**3, "max_cpus": 8.5}),
    ({"profiles": ["gpu-1", "cpu", "gpu-1"], "max_shared_slices": None}, {"profiles": ("gpu-1", "cpu")}),
    ({"profiles": []}, {"profiles": ()}),  # nothing allowed: a real choice
    ({"max_gpus": 0, "gpu_hours_per_week": 0}, {"max_gpus": 0, "gpu_hours_per_week": 0.0}),
]


@pytest.mark.parametrize("body, expected", GOOD)
def test_good_quota_bodies(body, expected):
    rule = parse_quota("group", "ml", parse_json_object(json.dumps(body).encode()), PROFILES)
    for field, value in expected.items():
        assert getattr(rule, field) == value
    assert rule.origin == "database" and (rule.scope, rule.name) == ("group", "ml")


BAD = [
    # (raw body, field, fragment of the message)
    (b"{", "body", "not valid JSON"),
    (b"[1, 2]", "body", "a JSON list is not accepted"),
    (b'{"max_gpus": NaN}', "body", "NaN is not a number JSON allows"),
    (b"{}", "body", "no field set"),
    (b'{"max_gpus": null}', "body", "no field set"),
    (b'{"max_gpu": 1}', "max_gpu", "unknown field 'max_gpu'. Accepted fields: max_gpus"),
    (b'{"": 1}', "body", "unknown field ''"),
    (b'{"max_gpus": -1}', "max_gpus", "outside 0 to 1024"),
    (b'{"max_gpus": 1.5}', "max_gpus", "Accepted: an integer from 0 to 1024"),
    (b'{"max_gpus": "2"}', "max_gpus", "Accepted: an integer"),
    (b'{"max_gpus": true}', "max_gpus", "a true/false value is not a number"),
    (b'{"max_gpus": 100000000000000000000}', "max_gpus", "outside 0 to 1024"),
    (b'{"gpu_hours_per_week": -0.5}', "gpu_hours_per_week", "outside 0 to 168000"),
    (b'{"gpu_hours_per_week": 1e309}', "gpu_hours_per_week", "outside 0 to 168000"),
    (b'{"max_memory": "lots"}', "max_memory", "not a valid memory specification"),
    (b'{"max_memory": []}', "max_memory", 'Accepted: a size from 0 to 1P'),
    (b'{"max_cpus": {}}', "max_cpus", "Accepted: a number of CPUs"),
    (b'{"profiles": [1]}', "profiles", "Accepted: a list of profile names"),
    (b'{"profiles": ["gpu-9"]}', "profiles", "'gpu-9' is not a profile. Accepted: cpu, gpu-1, gpu-shared"),
    (b'{"profiles": ["<script>"]}', "profiles", "is not a profile"),
    (b"\xff\xfe", "body", "not valid JSON"),
    (b'{"max_memory": "\\ud800"}', "body", "lone surrogate"),  # valid JSON, not storable text
    (b'{"\\udfff": 1}', "body", "lone surrogate"),
    (b"[" * 1000, "body", "nested too deeply"),
    (b'{"a": ' + b"[" * 1000 + b"}", "body", "nested too deeply"),
    (b"x" * (65 * 1024), "body", "larger than 64 KiB"),
]


@pytest.mark.parametrize("raw, field, fragment", BAD)
def test_bad_quota_bodies_name_the_field(raw, field, fragment):
    with pytest.raises(BadRequest) as e:
        parse_quota("group", "ml", parse_json_object(raw), PROFILES)
    assert e.value.field == field and fragment in str(e.value), str(e.value)


TARGETS = [
    ("user", "alice", ("user", "alice")),
    ("default", None, ("default", "")),
    ("team", "x", "scope"),
    ("default", "x", "name"),
    ("group", None, "name"),
    ("group", "<b>lab</b>", "name"),
    ("user", "a\x00b", "name"),
    ("user", "x" * 256, "name"),
]


@pytest.mark.parametrize("scope, name, expected", TARGETS)
def test_quota_targets(scope, name, expected):
    if isinstance(expected, tuple):
        assert parse_target(scope, name) == expected
    else:
        with pytest.raises(BadRequest) as e:
            parse_target(scope, name)
        assert e.value.field == expected


RANGES = [
    (None, None, (NOW - timedelta(days=7), NOW)),
    ("2026-11-01", "2026-11-08", (datetime(2026, 11, 1), datetime(2026, 11, 8))),
    ("2026-11-01T10:00:00+02:00", "2026-11-02T00:00Z", (datetime(2026, 11, 1, 8), datetime(2026, 11, 2))),
    ("2026-11-08", "2026-11-01", "since"),
    ("yesterday", None, "since"),
    (None, "0001-01-01", "until"),
    ("1970-01-01", "2999-01-01", "since"),  # longer than 10 years
]


@pytest.mark.parametrize("since, until, expected", RANGES)
def test_usage_ranges(since, until, expected):
    if isinstance(expected, tuple):
        assert parse_range(since, until, NOW) == expected
    else:
        with pytest.raises(BadRequest) as e:
            parse_range(since, until, NOW)
        assert e.value.field == expected


def alloc(i, user, mode, uuids, budget=0):
    return Allocation(i, user, "", f"p-{mode}", mode, tuple(uuids), budget, NOW - timedelta(minutes=90))


LIVE = [
    alloc(1, "alice", "exclusive", [gpu_uuid(0)]),
    alloc(2, "bob", "shared", [gpu_uuid(1)], 20 * 1024**3),
    alloc(3, "carol", "shared", [gpu_uuid(1)], 20 * 1024**3),
    alloc(4, "dave", "mig", [mig_uuid(1)]),
]


def test_device_rows_give_state_holder_and_since():
    rows = {r["uuid"]: r for r in device_rows(INV, LIVE, NOW, {gpu_uuid(0): (3 * 1024**3, 80 * 1024**3)})}
    assert rows[gpu_uuid(0)]["state"] == "held" and rows[gpu_uuid(0)]["holders"][0]["user"] == "alice"
    assert rows[gpu_uuid(0)]["holders"][0]["held_seconds"] == 5400 and rows[gpu_uuid(0)]["memory_used"] == 3 * 1024**3
    assert rows[gpu_uuid(1)]["state"] == "shared" and [h["user"] for h in rows[gpu_uuid(1)]["holders"]] == ["bob", "carol"]
    assert rows[gpu_uuid(2)]["state"] == "free" and rows[gpu_uuid(2)]["memory_used"] is None
    assert rows[gpu_uuid(5)]["state"] == "partitioned"
    assert rows[mig_uuid(1)]["state"] == "held" and rows[mig_uuid(1)]["index"] == "5:1" and rows[mig_uuid(1)]["parent"] == gpu_uuid(5)
    assert rows[mig_uuid(0)]["state"] == "free"
    assert all(r["simulated"] for r in rows.values())  # the inventory file is simulated


@pytest.mark.parametrize("key, uuid", [("0", gpu_uuid(0)), (gpu_uuid(2), gpu_uuid(2)), ("5:1", mig_uuid(1)), (mig_uuid(0), mig_uuid(0)), ("9", None), ("5:7", None), ("", None)])
def test_find_device(key, uuid):
    assert INV.find(key) == uuid


async def test_queue_rows_and_removal():
    clock = lambda: NOW
    queue = WaitQueue(clock)
    first = queue.join("exclusive×1", "alice", "gpu-1")
    second = queue.join("exclusive×1", "bob:big", "gpu-1")
    rows = queue_rows(queue, NOW + timedelta(seconds=30))
    assert [(r["holder"], r["position"], r["in_line"], r["waiting_seconds"], r["order"]) for r in rows] == [
        ("alice", 1, 2, 30, "arrival order"), ("bob:big", 2, 2, 30, "arrival order")]
    assert queue.remove(first.number, "admin") is first and first.removed_by == "admin"
    assert queue.remove(first.number, "admin") is None  # already gone
    assert queue.is_first(second)


def test_metrics_snapshot():
    records = [UsageRecord(1, 4, "dave", ("ml",), "", "p", mig_uuid(1), 0.125, NOW - timedelta(hours=1), None)]
    closed = {"user": {"alice": 3600.0, "bob": 10.0}, "group": {"ml": 3600.0, "vision": 3600.0}}
    fams = snapshot(MetricsInputs(INV, LIVE, {"shared": ["erin"]}, closed, records, NOW, max_users=2, max_groups=5))
    samples = {name: dict(f.samples) for name, f in fams.items()}
    assert samples["gpuhub_devices"][("gpu", "NVIDIA H100 80GB HBM3", "true")] == 5
    assert samples["gpuhub_devices_by_state"][("gpu", "NVIDIA H100 80GB HBM3", "held", "true")] == 1
    assert samples["gpuhub_devices_by_state"][("gpu", "NVIDIA H100 80GB HBM3", "shared", "true")] == 1
    assert samples["gpuhub_devices_by_state"][("mig:1g.5gb", "NVIDIA A100-SXM4-40GB", "held", "true")] == 1
    assert samples["gpuhub_queue_length"] == {("shared",): 1}
    assert samples["gpuhub_allocations"] == {("exclusive",): 1, ("shared",): 2, ("mig",): 1}
    assert samples["gpuhub_user_gpu_seconds"] == {("alice",): 3600.0, ("dave",): 450.0, ("(others)",): 10.0}
    assert samples["gpuhub_group_gpu_seconds"] == {("ml",): 4050.0, ("vision",): 3600.0}


def test_metrics_say_how_much_of_the_held_gpu_time_was_busy_and_from_which_readings():
    records = [UsageRecord(1, 4, "dave", ("ml",), "", "p", mig_uuid(1), 0.125, NOW - timedelta(hours=1), None, observed_seconds=400.0, busy_seconds=100.0)]
    closed = {"user": {"alice": 3600.0}, "group": {"ml": 3600.0}}
    activity = {"user": {"alice": (3000.0, 2700.0)}, "group": {"ml": (3000.0, 2700.0)}}
    inputs = MetricsInputs(INV, LIVE, {}, closed, records, NOW, max_users=5, max_groups=5, closed_activity=activity, readings_simulated=True)
    samples = {name: dict(f.samples) for name, f in snapshot(inputs).items()}
    assert samples["gpuhub_user_gpu_measured_seconds"] == {("alice", "true"): 3000.0, ("dave", "true"): 400.0}
    assert samples["gpuhub_user_gpu_busy_seconds"] == {("alice", "true"): 2700.0, ("dave", "true"): 100.0}
    assert samples["gpuhub_group_gpu_busy_seconds"] == {("ml", "true"): 2800.0}
    none_yet = MetricsInputs(INV, LIVE, {}, closed, [], NOW, max_users=5, max_groups=5)
    assert dict(snapshot(none_yet)["gpuhub_user_gpu_busy_seconds"].samples) == {}
