"""The hub on a real Swarm (``tests/swarm/swarmhub.py``; fixture ``swarm_hub``): users start servers
through the hub's REST API as on one host; the tests check what lands where on each worker's own
engine, and what the faults of docs/reliability.md ("Swarm") leave.
"""

from __future__ import annotations

import subprocess
import time

import requests

from tests.hubprocess import REPO, answers_within
from tests.swarm.swarmhub import PREFIX, UP, gpu_uuid, live_allocations, server_gone, wait_in_line, wait_nodes


def test_every_node_reports_its_simulated_gpus_through_its_reporter(swarm_hub):
    nodes = wait_nodes(swarm_hub, lambda ns: len(ns) == 3 and all(n["takes_servers"] for n in ns))
    by_name = {n["hostname"]: n for n in nodes}
    assert {name: by_name[name]["gpus"] for name in by_name} == {"manager": 0, "worker1": 2, "worker2": 1}
    assert all(by_name[w]["simulated"] for w in ("worker1", "worker2"))
    gpus = swarm_hub.gpuhub("GET", "/gpus").json()
    assert gpus["simulated"] and gpus["source"].startswith("simulated (swarm: 3 node(s)")
    assert sorted(d["index"] for d in gpus["devices"]) == ["worker1/0", "worker1/1", "worker2/0"]


def test_a_two_gpu_server_runs_on_the_node_that_has_both_with_one_hosts_limits(swarm_hub):
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    swarm_hub.start("alice", "gpu-2")
    swarm_hub.wait_ready("alice")
    node, info = swarm_hub.container_of("alice")
    assert node == "worker1"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"].split(",") == [gpu_uuid(0), gpu_uuid(1)]
    assert env["GPUHUB_GPU_SIMULATED"] == "true"
    host = info["HostConfig"]
    assert host["Memory"] == 1024**3 and host["NanoCpus"] > 0 and host["PidsLimit"] == 4096
    assert info["Config"]["User"] == "1000:1000" and host["CapDrop"] == ["ALL"]
    shm = [m for m in info["Mounts"] if m["Destination"] == "/dev/shm"]
    assert shm and shm[0]["Type"] == "tmpfs"
    worker1 = swarm_hub.cluster.node("worker1")
    status = worker1.docker("exec", info["Id"], "grep", "NoNewPrivs", "/proc/1/status").stdout
    assert status.split() == ["NoNewPrivs:", "1"]
    # JupyterLab answers through the hub's proxy: hub (manager) -> overlay -> worker1
    r = requests.get(f"{swarm_hub.url}/user/alice/api/status", headers={"Authorization": f"token {swarm_hub.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    homes = swarm_hub.gpuhub("GET", "/homes").json()["homes"]
    assert [(h["user"], h["node"]) for h in homes] == [("alice", "worker1")]
    held = {n["hostname"]: n["gpus_held"] for n in swarm_hub.gpuhub("GET", "/nodes").json()["nodes"]}
    assert held == {"manager": 0, "worker1": 2, "worker2": 0}
    # Prometheus figures per node (the admin's token has read:metrics; refreshed every 15 s)
    want = (
        'gpuhub_node_devices{node="worker1",simulated="true",what="held"} 2.0',
        'gpuhub_node_devices{node="worker2",simulated="true",what="gpus"} 1.0',
        'gpuhub_node_takes_servers{availability="active",node="worker2",state="ready"} 1.0',
    )
    deadline, metrics = time.monotonic() + 60, ""
    while time.monotonic() < deadline and not all(line in metrics for line in want):
        time.sleep(2)
        metrics = requests.get(f"{swarm_hub.url}/hub/metrics", headers={"Authorization": f"token {swarm_hub.token}"}, timeout=30).text
    for line in want:
        assert line in metrics, f"{line} not in:\n" + "\n".join(m for m in metrics.splitlines() if m.startswith("gpuhub_node"))


def test_more_gpus_than_any_one_node_has_is_refused_naming_the_largest_node(swarm_hub):
    r = swarm_hub.start("bob", "gpu-3", ok=(409,))
    assert "the largest node has 2" in r.json()["message"]


def test_a_users_servers_follow_their_home_and_a_move_takes_the_files_along(swarm_hub):
    swarm_hub.start("carol", "cpu-small")
    swarm_hub.wait_ready("carol")
    first, info = swarm_hub.container_of("carol")
    assert first in ("worker1", "worker2")
    node = swarm_hub.cluster.node(first)
    node.docker("exec", info["Id"], "sh", "-c", "mkdir -p work && echo kept > work/note.txt")
    swarm_hub.stop("carol")
    swarm_hub.start("carol", "cpu-small")
    swarm_hub.wait_ready("carol")
    again, _ = swarm_hub.container_of("carol")
    assert again == first  # the home's node
    r = swarm_hub.gpuhub("POST", "/homes/carol/move", json={"to": "worker2"}, ok=(409,))
    assert "stop it first" in r.json()["message"]
    swarm_hub.stop("carol")
    other = "worker2" if first == "worker1" else "worker1"
    moved = swarm_hub.gpuhub("POST", "/homes/carol/move", json={"to": other}).json()
    assert moved["node"] == other
    swarm_hub.start("carol", "cpu-small")
    swarm_hub.wait_ready("carol")
    there, info = swarm_hub.container_of("carol")
    assert there == other
    note = swarm_hub.cluster.node(other).docker("exec", info["Id"], "cat", "/home/jovyan/work/note.txt").stdout
    assert note.strip() == "kept"
    swarm_hub.stop("carol")


# --- faults (docs/reliability.md, "Swarm") ---------------------------------------------------------
def test_the_registry_down_refuses_a_start_before_anything_is_held(swarm_hub):
    cluster = swarm_hub.cluster
    before = live_allocations(swarm_hub)
    cluster.registry_stop()
    try:
        r = swarm_hub.start("gina", "gpu-1", ok=(503,))
        assert "image registry did not answer" in r.json()["message"]
        assert live_allocations(swarm_hub) == before
        assert not [s for s in cluster.manager.client().api.services() if "gina" in s["Spec"]["Name"]]
    finally:
        cluster.registry_start()


def test_a_hub_killed_finds_the_same_assignments_on_every_node(swarm_hub):
    swarm_hub.start("dave", "gpu-1")  # worker1's two GPUs are alice's: dave's goes to worker2
    swarm_hub.wait_ready("dave")
    assert swarm_hub.container_of("dave")[0] == "worker2"
    before = live_allocations(swarm_hub)
    assert ("worker1/0", "alice") in before and ("worker2/0", "dave") in before
    manager = swarm_hub.cluster.manager
    hub_container = manager.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PREFIX}").stdout.split()
    manager.docker("kill", "-s", "KILL", *hub_container)
    subprocess.run([*swarm_hub.compose, *UP], cwd=REPO, env=swarm_hub.env, check=True, timeout=300)
    assert answers_within(f"{swarm_hub.url}/hub/health", 120, interval=1), swarm_hub.logs()
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    assert live_allocations(swarm_hub) == before
    assert "kept allocation" in swarm_hub.logs(200)
    # dave's server answers once it reaches the restarted hub, which is at another overlay address
    # now: its client looks the hub's name up for every request (gpuhub.singleuser.hubclient)
    waited = swarm_hub.wait_server_answers("dave", since=time.monotonic(), timeout=60)
    swarm_hub.cluster.notes.append(f"hub killed and started again: dave's server on worker2 answered {waited:.0f} s after the nodes reported again")


def test_a_lost_worker_keeps_its_gpus_held_until_it_is_back_and_its_users_files_stay(swarm_hub):
    worker2 = swarm_hub.cluster.node("worker2")
    _, info = swarm_hub.container_of("dave")
    worker2.docker("exec", info["Id"], "sh", "-c", "echo before-the-loss > /home/jovyan/lost.txt")
    worker2.kill_engine()
    try:
        # its reporter falls silent first; the manager marks the node down after its heartbeat (about 15 s)
        wait_nodes(swarm_hub, lambda ns: any(n["hostname"] == "worker2" and "the node is down" in n["why_not"] for n in ns))
        server_gone(swarm_hub, "dave")
        assert "its node worker2 is down" in swarm_hub.logs(300)
        # its GPU stays held for dave, and no other start gets a GPU on a lost node: erin waits in line
        swarm_hub.start("erin", "gpu-1", ok=(202,))
        waiting = wait_in_line(swarm_hub, "erin")
        held = {n["hostname"]: n["gpus_held"] for n in swarm_hub.gpuhub("GET", "/nodes").json()["nodes"]}
        assert waiting["position"] == 1 and held["worker2"] == 1  # dave's, on the lost node
        assert ("worker2/0", "dave") in live_allocations(swarm_hub)  # the admin's GPU table still shows it
        # dave's home is on the lost node: his start says so
        r = swarm_hub.start("dave", "cpu-small", ok=(503,))
        assert "worker2" in r.json()["message"] and "takes no new servers" in r.json()["message"]
    finally:
        worker2.start_engine()
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    # back: dave's held GPU is released, and the line hands it to erin without her asking again
    swarm_hub.wait_ready("erin")
    assert swarm_hub.container_of("erin")[0] == "worker2"
    assert ("worker2/0", "dave") not in live_allocations(swarm_hub), "the lost node's GPU was not handed back after it returned"
    swarm_hub.stop("erin")
    swarm_hub.start("dave", "gpu-1")
    swarm_hub.wait_ready("dave")
    node, info = swarm_hub.container_of("dave")
    assert node == "worker2"
    assert worker2.docker("exec", info["Id"], "cat", "/home/jovyan/lost.txt").stdout.strip() == "before-the-loss"
    assert sorted(live_allocations(swarm_hub)) == [("worker1/0", "alice"), ("worker1/1", "alice"), ("worker2/0", "dave")]


def test_a_drained_node_gets_nothing_new(swarm_hub):
    manager, worker2 = swarm_hub.cluster.manager, swarm_hub.cluster.node("worker2")
    swarm_hub.stop("dave")
    manager.docker("node", "update", "--availability", "drain", worker2.node_id)
    try:
        nodes = wait_nodes(swarm_hub, lambda ns: any(n["hostname"] == "worker2" and not n["takes_servers"] for n in ns))
        assert next(n for n in nodes if n["hostname"] == "worker2")["why_not"] == "drained by an admin"
        swarm_hub.start("fred", "gpu-1", ok=(202,))  # worker1's are alice's; worker2's is drained: fred waits
        assert wait_in_line(swarm_hub, "fred")["position"] == 1
        time.sleep(6)  # a few node polls: still waiting, nothing placed on the drained node
        assert wait_in_line(swarm_hub, "fred")["position"] == 1 and not [a for a in live_allocations(swarm_hub) if a[1] == "fred"]
    finally:
        manager.docker("node", "update", "--availability", "active", worker2.node_id)
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    swarm_hub.wait_ready("fred")  # the node's return served the line
    assert swarm_hub.container_of("fred")[0] == "worker2"
    swarm_hub.stop("fred")
    swarm_hub.stop("alice")
    assert live_allocations(swarm_hub) == []
