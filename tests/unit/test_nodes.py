"""Several hosts, pure: a node report's JSON both ways (and bad ones refused naming the field), which
nodes take new servers and why not, and the pool the allocator places in."""

import json
from datetime import datetime, timedelta

import pytest

from gpuhub.inventory.activity import DeviceActivity, Reading
from gpuhub.inventory.file import parse_inventory
from gpuhub.inventory.model import Inventory
from gpuhub.inventory.report import NodeReport, ReportError, parse_report, report_json
from gpuhub.policy.nodes import Received, SwarmNode, is_lost, node_activity, node_of_devices, node_statuses, pool
from tests.unit.test_inventory import POOL

NOW = datetime(2026, 12, 3, 12, 0, 0)
NODE_ID = "abcdefghijklmnopqrstuvwxy"


def report(node_id=NODE_ID, hostname="gpu-1", text=POOL, simulated=True, busy=None) -> NodeReport:
    from dataclasses import replace

    inv = replace(parse_inventory(text, f"file:/srv/{hostname}.toml"), simulated=simulated).with_node(hostname)
    activity = Reading({g.uuid: DeviceActivity(busy) for g in inv.gpus}, simulated, f"node {hostname}")
    return NodeReport(node_id, hostname, inv, {inv.gpus[0].uuid: (1, 2)}, activity)


@pytest.mark.parametrize("with_activity", [True, False])
def test_a_report_survives_its_json_both_ways(with_activity):
    from dataclasses import replace

    sent = report(busy=40) if with_activity else replace(report(), activity=None)
    got = parse_report(report_json(sent), NODE_ID)
    assert got == sent
    assert {g.node for g in got.inventory.gpus} == {"gpu-1"}
    assert got.inventory.slices() == sent.inventory.slices()


def _mutate(path, value):
    data = report_json(report())
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


BAD = [
    # (what, payload, field named)
    ("not an object", [1, 2], "body"),
    ("no node", _mutate(["node"], KeyError), "node"),
    ("another node's id", _mutate(["node", "id"], "zzzzzzzzzzzzzzzzzzzzzzzzz"), "node.id"),
    ("hostname with a slash", _mutate(["node", "hostname"], "a/b"), "node.hostname"),
    ("gpus not a list", _mutate(["inventory", "gpus"], {"a": 1}), "inventory.gpus"),
    ("uuid not GPU-", _mutate(["inventory", "gpus", 0, "uuid"], "MIG-1"), "inventory.gpus[0].uuid"),
    ("memory zero", _mutate(["inventory", "gpus", 1, "memory_bytes"], 0), "inventory.gpus[1].memory_bytes"),
    ("memory a bool", _mutate(["inventory", "gpus", 1, "memory_bytes"], True), "inventory.gpus[1].memory_bytes"),
    ("capability of three", _mutate(["inventory", "gpus", 0, "compute_capability"], [9, 0, 1]), "inventory.gpus[0].compute_capability"),
    ("healthy a string", _mutate(["inventory", "gpus", 0, "healthy"], "yes"), "inventory.gpus[0].healthy"),
    ("mig uuid", _mutate(["inventory", "gpus", 5, "mig", 0, "uuid"], "GPU-x"), "inventory.gpus[5].mig[0].uuid"),
    ("duplicate uuid", _mutate(["inventory", "gpus", 1, "uuid"], report_json(report())["inventory"]["gpus"][0]["uuid"]), "inventory.gpus"),
    ("too many GPUs", _mutate(["inventory", "gpus"], report_json(report())["inventory"]["gpus"] * 20), "inventory.gpus"),
    ("memory of a stranger", _mutate(["memory_used"], {"GPU-nobody": [1, 2]}), "memory_used.GPU-nobody"),
    ("memory not a pair", _mutate(["memory_used"], {report_json(report())["inventory"]["gpus"][0]["uuid"]: [1]}), "memory_used."),
    ("simulated missing", _mutate(["inventory", "simulated"], KeyError), "inventory.simulated"),
    ("activity not an object", _mutate(["activity"], [1]), "activity"),
    ("activity simulated missing", _mutate(["activity", "simulated"], KeyError), "activity.simulated"),
    ("utilisation above 100", _mutate(["activity", "devices", report().inventory.gpus[0].uuid], {"utilisation": 101}), "activity.devices."),
    ("utilisation a string", _mutate(["activity", "devices", report().inventory.gpus[0].uuid], {"utilisation": "5"}), "activity.devices."),
    ("activity of a stranger", _mutate(["activity", "devices", "GPU-nobody"], {"utilisation": 0}), "activity.devices.GPU-nobody"),
]


@pytest.mark.parametrize("what, payload, field", BAD, ids=[b[0] for b in BAD])
def test_a_bad_report_is_refused_naming_the_field(what, payload, field):
    with pytest.raises(ReportError) as e:
        parse_report(payload, NODE_ID)
    assert e.value.field.startswith(field)
    assert "Accepted" in str(e.value) or "not a JSON object" in str(e.value)


def node(id_, hostname, state="ready", availability="active", role="worker"):
    return SwarmNode(id_, hostname, role, state, availability)


FRESH = NOW - timedelta(seconds=5)
STALE = NOW - timedelta(seconds=31)
STATUS_TABLE = [
    # (what, node, received at (None: never), takes servers, why not contains)
    ("ready, active, fresh", node("a" * 25, "gpu-1"), FRESH, True, ""),
    ("down", node("a" * 25, "gpu-1", state="down"), FRESH, False, "the node is down"),
    ("disconnected", node("a" * 25, "gpu-1", state="disconnected"), FRESH, False, "disconnected"),
    ("unknown: the manager restarted", node("a" * 25, "gpu-1", state="unknown"), FRESH, False, "does not know its state yet"),
    ("drained", node("a" * 25, "gpu-1", availability="drain"), FRESH, False, "drained by an admin"),
    ("paused", node("a" * 25, "gpu-1", availability="pause"), FRESH, False, "paused by an admin"),
    ("never reported", node("a" * 25, "gpu-1"), None, False, "no report from its node reporter yet"),
    ("silent for too long", node("a" * 25, "gpu-1"), STALE, False, "no report from its node reporter for 31 s"),
]


@pytest.mark.parametrize("what, swarm_node, at, takes, why", STATUS_TABLE, ids=[t[0] for t in STATUS_TABLE])
def test_which_nodes_take_new_servers(what, swarm_node, at, takes, why):
    received = {} if at is None else {swarm_node.id: Received(report(swarm_node.id, swarm_node.hostname), at)}
    (status,) = node_statuses([swarm_node], received, NOW, max_age=30)
    assert status.schedulable is takes
    assert why in status.why_not and (status.why_not == "") is takes
    assert status.gpus == (6 if at else 0) and status.simulated is bool(at)
    placed = pool([status], received)
    assert len(placed.gpus) == (6 if takes else 0)


def test_the_pool_is_the_taking_nodes_gpus_in_hostname_order_and_says_simulated():
    two = "\n".join(f'[[gpus]]\nuuid = "GPU-{n}{i:07d}-0000-0000-0000-000000000000"\nname = "H100"\nmemory = "80G"\n' for n in (7, 8) for i in range(1))
    nodes = [node("b" * 25, "gpu-b"), node("a" * 25, "gpu-a"), node("c" * 25, "gpu-c", state="down")]
    received = {
        "a" * 25: Received(report("a" * 25, "gpu-a", two, simulated=False), FRESH),
        "b" * 25: Received(report("b" * 25, "gpu-b"), FRESH),
        "c" * 25: Received(report("c" * 25, "gpu-c", two.replace("GPU-7", "GPU-5").replace("GPU-8", "GPU-6")), FRESH),
    }
    statuses = node_statuses(nodes, received, NOW, max_age=30)
    assert [s.hostname for s in statuses] == ["gpu-a", "gpu-b", "gpu-c"]
    placed = pool(statuses, received)
    assert placed.nodes() == ["gpu-a", "gpu-b"]  # the down node's GPUs are not placed in
    assert pool(statuses, received, taking_only=False).nodes() == ["gpu-a", "gpu-b", "gpu-c"]  # the admin sees them
    assert placed.simulated and placed.label().startswith("simulated (swarm: 2 node(s)")
    assert node_of_devices(received)[placed.gpus[0].uuid] == "a" * 25
    rows = placed.device_rows()
    assert rows[0][0] == "gpu-a/0" and rows[2][0] == "gpu-b/0"
    assert placed.find("gpu-b/5:1") == placed.on_node("gpu-b").gpus[5].mig[1].uuid


def test_no_node_taking_servers_says_so():
    assert pool([], {}) == Inventory((), "swarm: 0 node(s), no inventory", False, "no Swarm node takes servers now (see the Nodes view)")


HOME_TABLE = [
    # (what, home node, holdings on gpu-b's GPU 0, expected: "gpu-a"/"gpu-b" placed, or a decision type)
    ("no home: best fit anywhere", "", False, "gpu-a"),
    ("home on gpu-b: placed there", "gpu-b", False, "gpu-b"),
    ("home on gpu-b, its GPUs held: waits", "gpu-b", True, "NoFitNow"),
    ("home on a node that takes no servers: waits", "gpu-z", False, "NoFitNow"),
]


@pytest.mark.parametrize("what, home, held, expected", HOME_TABLE, ids=[t[0] for t in HOME_TABLE])
def test_a_start_is_placed_on_its_homes_node_only(what, home, held, expected):
    from gpuhub.policy.allocator import GpuRequest, Holding, NoFitNow, Placement
    from gpuhub.policy.decide import SiteRules, Snapshot, Start, decide

    one = '[[gpus]]\nuuid = "GPU-10000000-0000-0000-0000-000000000000"\nname = "H100"\nmemory = "80G"\n'
    nodes = [node("a" * 25, "gpu-a"), node("b" * 25, "gpu-b")]
    received = {"a" * 25: Received(report("a" * 25, "gpu-a", one), FRESH), "b" * 25: Received(report("b" * 25, "gpu-b"), FRESH)}
    inventory = pool(node_statuses(nodes, received, NOW, 30), received)
    b_gpus = [g.uuid for g in inventory.on_node("gpu-b").gpus if not g.mig and g.healthy]
    holdings = [Holding(u, "exclusive") for u in b_gpus] if held else []
    start = Start("alice", "", (), "gpu-1", GpuRequest("exclusive"), 1, 1.0, node=home)
    decision = decide(inventory, start, SiteRules((), 4, "rolling"), Snapshot(NOW, holdings, [], 0.0, [], []))
    if expected == "NoFitNow":
        assert isinstance(decision, NoFitNow) and decision.reason
    else:
        assert isinstance(decision, Placement)
        assert inventory.by_uuid[decision.uuids[0]].node == expected


def test_a_new_home_goes_to_a_worker_taking_servers_the_same_for_the_same_user():
    from gpuhub.policy.nodes import node_for_new_home

    nodes = [node("m" * 25, "mgr", role="manager"), node("a" * 25, "gpu-a"), node("b" * 25, "gpu-b", availability="drain")]
    received = {n.id: Received(report(n.id, n.hostname), FRESH) for n in nodes}
    statuses = node_statuses(nodes, received, NOW, 30)
    assert node_for_new_home("alice", statuses).hostname == "gpu-a"  # not the manager, not the drained one
    assert node_for_new_home("alice", statuses) == node_for_new_home("alice", statuses)
    assert node_for_new_home("alice", [s for s in statuses if s.role == "manager"]).hostname == "mgr"
    assert node_for_new_home("alice", []) is None


def test_the_metrics_say_per_node_whether_it_takes_servers_and_what_it_holds():
    from gpuhub.hub.accounting import MetricsInputs
    from gpuhub.web.metrics import snapshot

    nodes = [node("a" * 25, "gpu-a"), node("b" * 25, "gpu-b", state="down")]
    received = {n.id: Received(report(n.id, n.hostname), FRESH) for n in nodes}
    statuses = node_statuses(nodes, received, NOW, 30)
    inputs = MetricsInputs(pool(statuses, received), [], {}, {}, [], NOW, 10, 10, nodes=tuple(statuses), held_per_node={"a" * 25: 2})
    families = snapshot(inputs)
    takes = dict(families["gpuhub_node_takes_servers"].samples)
    assert takes == {("gpu-a", "ready", "active"): 1, ("gpu-b", "down", "active"): 0}
    devices = dict(families["gpuhub_node_devices"].samples)
    assert devices[("gpu-a", "held", "true")] == 2 and devices[("gpu-b", "gpus", "true")] == 6
    one_host = snapshot(MetricsInputs(pool([], {}), [], {}, {}, [], NOW, 10, 10))
    assert one_host["gpuhub_node_devices"].samples == []


def gpus_text(first_digit: int) -> str:
    return "\n".join(f'[[gpus]]\nuuid = "GPU-{first_digit}{i:07d}-0000-0000-0000-000000000000"\nname = "H100"\nmemory = "80G"\n' for i in range(2))


def test_the_reclaims_reading_is_every_nodes_fresh_activity_a_silent_nodes_left_out():
    one, two = report("a" * 25, "gpu-1", gpus_text(1), busy=0), report("b" * 25, "gpu-2", gpus_text(2), busy=90)
    silent = report("c" * 25, "gpu-3", gpus_text(3), busy=0)
    received = {"a" * 25: Received(one, FRESH), "b" * 25: Received(two, FRESH), "c" * 25: Received(silent, STALE)}
    reading = node_activity(received, NOW, 30)
    assert set(reading.devices) == {g.uuid for g in one.inventory.gpus} | {g.uuid for g in two.inventory.gpus}
    assert reading.devices[two.inventory.gpus[0].uuid].utilisation == 90
    assert reading.simulated and "gpu-1, gpu-2" in reading.source
    assert node_activity({}, NOW, 30).devices == {}


def test_a_reporter_reads_its_nodes_own_simulated_files(tmp_path):
    from gpuhub.reporter import read_report

    (tmp_path / "gpu-2.toml").write_text(gpus_text(2))
    uuid = "GPU-20000001-0000-0000-0000-000000000000"
    (tmp_path / "gpu-2-activity.json").write_text(json.dumps({"devices": {uuid: {"utilisation": 7}}}))
    got = read_report(NODE_ID, "gpu-2", f"file:{tmp_path}/{{node}}.toml", f"file:{tmp_path}/{{node}}-activity.json")
    assert [g.node for g in got.inventory.gpus] == ["gpu-2", "gpu-2"] and got.inventory.simulated
    assert got.activity.simulated and got.activity.devices[uuid].utilisation == 7
    assert parse_report(report_json(got), NODE_ID).activity.devices == got.activity.devices
    (tmp_path / "gpu-2-activity.json").write_text("{broken")
    assert read_report(NODE_ID, "gpu-2", f"file:{tmp_path}/{{node}}.toml", f"file:{tmp_path}/{{node}}-activity.json").activity is None


@pytest.mark.parametrize(
    "state, lost",
    [("ready", False), ("unknown", False), ("down", True), ("disconnected", True), (None, True)],
)
def test_which_nodes_servers_count_as_stopped(state, lost):
    """``unknown`` is what a restarted manager says of every node until it registers again: not lost."""
    assert is_lost(None if state is None else node("a" * 25, "gpu-1", state=state)) is lost
