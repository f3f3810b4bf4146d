"""GPU-idle reclaim, the pure part: busy or idle, when a server is stopped, what joins what."""

from datetime import datetime, timedelta

import pytest

from gpuhub.agent.activity import ActivityError, DeviceActivity, Reading, read_file
from gpuhub.agent.reclaim import HeldServer, held_servers, is_busy, stop_time, warning
from gpuhub.config.schema import Reclaim

T0 = datetime(2026, 11, 23, 9, 0)
A, B = "GPU-a", "GPU-b"


def server(uuids=(A,), session="", last_activity=None):
    return HeldServer(7, "alice", "", session, tuple(uuids), T0, last_activity)


@pytest.mark.parametrize(
    "devices, busy",
    [
        ({A: DeviceActivity(0)}, False),
        ({A: DeviceActivity(5)}, False),  # at the threshold: idle
        ({A: DeviceActivity(6)}, True),
        ({A: DeviceActivity(None)}, True),  # not measured (a MIG slice): never reclaimed on a guess
        ({}, True),  # not in the reading at all
    ],
)
def test_busy_or_idle(devices, busy):
    assert is_busy(server(), Reading(devices, True, "file:x"), 5) is busy


def test_two_gpus_are_idle_only_when_both_are():
    reading = Reading({A: DeviceActivity(0), B: DeviceActivity(40)}, False, "nvml")
    assert is_busy(server((A, B)), reading, 5)


def settings(**kw):
    s = Reclaim()
    for k, v in kw.items():
        setattr(s, k, v)
    return s


@pytest.mark.parametrize(
    "held, kw, expected",
    [
        (server(), {"idle_timeout": 3600}, T0 + timedelta(hours=1)),
        (server(session="ml101"), {"idle_timeout": 3600, "session_idle_timeout": 600}, T0 + timedelta(minutes=10)),
        (server(session="ml101"), {"idle_timeout": 3600, "session_idle_timeout": 0}, T0 + timedelta(hours=1)),
        (server(), {"idle_timeout": 0}, None),  # reclaim off
        (server(last_activity=T0 + timedelta(minutes=55)), {"idle_timeout": 3600, "require_inactive": 900}, T0 + timedelta(minutes=70)),
        (server(last_activity=T0), {"idle_timeout": 3600, "require_inactive": 900}, T0 + timedelta(hours=1)),
    ],
)
def test_stop_time(held, kw, expected):
    assert stop_time(held, T0, settings(**kw)) == expected


def test_the_warning_says_when_what_and_if_simulated():
    reading = Reading({A: DeviceActivity(0, {7: 3 * 1024**3, 8: 1024**3})}, True, "file:x")
    text = warning(server(), reading, T0, T0 + timedelta(hours=2), T0 + timedelta(minutes=110), 5)
    assert text == (
        "Your GPU has been idle for 1 h 50 min (utilisation at most 5 %, 3.0 GiB of GPU memory held)."
        " This server will be stopped at 11:00 UTC to free the GPU for others; your files are kept."
        " Use the GPU to keep it. [SIMULATED GPU reading]"
    )


def test_held_servers_join_devices_and_ready_servers():
    holder = {"allocation": 7, "user": "alice", "server": "", "since": "2026-11-23T08:59:00Z", "session": None}
    devices = [{"uuid": A, "holders": [holder]}, {"uuid": B, "holders": [holder]}, {"uuid": "GPU-c", "holders": []},
               {"uuid": "GPU-d", "holders": [{**holder, "allocation": 9, "user": "bob"}]}]
    users = [
        {"name": "alice", "servers": {"": {"ready": True, "started": "2026-11-23T09:00:00.123Z", "last_activity": "2026-11-23T09:30:00Z"}}},
        {"name": "bob", "servers": {"": {"ready": False, "started": None}}},  # still starting: left alone
    ]
    assert held_servers(devices, users) == [HeldServer(7, "alice", "", "", (A, B), T0.replace(microsecond=123000), T0 + timedelta(minutes=30))]


def test_a_batch_jobs_gpu_is_never_taken_for_an_idle_server():
    """A job's allocation is held under ``job/ID``, never a server's name: alice's running server does
    not make her job's GPU look like a server's (reclaim would stop the server for the job's idleness)."""
    job = {"allocation": 11, "user": "alice", "server": "job/3", "since": "2026-11-23T08:59:00Z", "session": None}
    users = [{"name": "alice", "servers": {"": {"ready": True, "started": "2026-11-23T09:00:00Z", "last_activity": None}}}]
    assert held_servers([{"uuid": A, "holders": [job]}], users) == []


def test_the_simulated_reading_file(tmp_path):
    path = tmp_path / "activity.json"
    path.write_text('{"devices": {"GPU-a": {"utilisation": 3, "memory": {"7": 1024}}, "GPU-b": {"utilisation": null}}}')
    reading = read_file(str(path))
    assert reading.simulated and reading.devices == {A: DeviceActivity(3, {7: 1024}), B: DeviceActivity(None, {})}
    path.write_text('{"devices": []}')
    with pytest.raises(ActivityError):
        read_file(str(path))


class EngineWith:
    """The docker-py calls the reader makes (containers.list, Container.top), answered from a table."""

    def __init__(self, pids_by_allocation: dict[int, list[int]]):
        self.containers = self
        self.table = pids_by_allocation

    def list(self, filters):
        assert filters == {"label": "org.gpuhub.allocation"}
        return [
            type("C", (), {"labels": {"org.gpuhub.allocation": str(a)}, "top": lambda self, ps_args, p=pids: {"Titles": ["PID"], "Processes": [[str(x)] for x in p]}})()
            for a, pids in self.table.items()
        ]


def test_nvml_activity_maps_processes_to_allocations():
    from gpuhub.agent.activity import NvmlActivity
    from tests.unit.nvml_recorded import RecordedNvml, h100

    idle = h100(0, utilization=0, processes=[(4101, 2 * 1024**3), (4102, 1024**3), (999, 5)])
    busy = h100(1, utilization=93, processes=[(5200, 40 * 1024**3)])
    reading = NvmlActivity(RecordedNvml([idle, busy]), EngineWith({7: [4101, 4102], 9: [5200]})).read()
    assert not reading.simulated and reading.source == "nvml"
    assert reading.devices[idle["uuid"]] == DeviceActivity(0, {7: 3 * 1024**3})  # pid 999 is no gpuhub container's
    assert reading.devices[busy["uuid"]] == DeviceActivity(93, {9: 40 * 1024**3})


def test_nvml_activity_unavailable_is_an_activity_error():
    import pynvml

    from gpuhub.agent.activity import NvmlActivity
    from tests.unit.nvml_recorded import RecordedNvml

    with pytest.raises(ActivityError) as e:
        NvmlActivity(RecordedNvml([], init_error=pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)), EngineWith({})).read()
    assert str(e.value).startswith("NVML:")
