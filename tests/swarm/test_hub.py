"""The hub on a real Swarm: docker-compose.yml's hub on the manager (``[engine] kind = "swarm"``), the
user image from the manager's registry, a node reporter on every node reading that node's SIMULATED
inventory (worker1: 2 NVLinked GPUs, worker2: 1, the manager: none). Users start servers through the
hub's REST API as on one host; the tests check what lands where on each worker's own engine.

Fixture: ``swarm_hub`` (module): the composed hub on the manager, its admin token, and helpers.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import COMPOSED_HUB_TABLE, compose_command
from tests.hubprocess import REPO, answers_within
from tests.swarm.cluster import MANAGER_ADDRESS, OVERLAY, Cluster

PREFIX = "gpuhubsw"
PORT = 8000
NODE_GPUS = {"worker1": (0, 1), "worker2": (2,)}  # simulated GPU numbers per node; the manager has none


def gpu_uuid(n: int) -> str:
    return f"GPU-5{n:07d}-0000-0000-0000-000000000000"


def inventory_of(node: str) -> str:
    gpus = NODE_GPUS.get(node, ())
    text = ""
    for n in gpus:
        peers = [gpu_uuid(p) for p in gpus if p != n]
        text += f'[[gpus]]\nuuid = "{gpu_uuid(n)}"\nname = "NVIDIA H100 80GB HBM3"\nmemory = "80G"\nnvlink_peers = {json.dumps(peers)}\n\n'
    return text


def settings(image: str, inventories: Path) -> str:
    return COMPOSED_HUB_TABLE + f'''
[spawner]
network = "{OVERLAY}"
allowed_images = ["{image}"]
home_volume = "{PREFIX}-home-{{slug}}"
container_name = "{PREFIX}-{{slug}}"
start_timeout = 180

[engine]
kind = "swarm"
report_interval = 3
homes = "node"

[gpus]
inventory = "file:{inventories}/{{node}}.toml"
exposure = "env-only"
queue_timeout = 0

[[profiles]]
name = "cpu-small"
display_name = "CPU · small"
image = "{image}"
mem_limit = "1G"
cpu_limit = 1
shm_size = "256M"
default = true

[[profiles]]
name = "gpu-1"
display_name = "1 × GPU"
image = "{image}"
mem_limit = "1G"
gpus = 1
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-2"
display_name = "2 × GPU"
image = "{image}"
mem_limit = "1G"
shm_size = "128M"
gpus = 2
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-3"
display_name = "3 × GPU"
image = "{image}"
mem_limit = "1G"
gpus = 3
gpu_mode = "exclusive"
'''


@dataclass
class SwarmHub:
    cluster: Cluster
    url: str
    token: str
    env: dict
    compose: list

    def api(self, method: str, path: str, ok=(200, 201, 202, 204), **kw) -> requests.Response:
        r = requests.request(method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"}, timeout=60, **kw)
        assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text[:500]}\n{self.logs()}"
        return r

    def gpuhub(self, method: str, path: str, **kw) -> requests.Response:
        return self.api(method, f"/gpuhub/v1{path}", **kw)

    def logs(self, tail: int = 60) -> str:
        out = subprocess.run([*self.compose, "logs", "--no-color", f"--tail={tail}", "hub"], cwd=REPO, env=self.env, capture_output=True, text=True)
        return out.stdout + out.stderr

    def start(self, user: str, profile: str, ok=(201, 202)) -> requests.Response:
        self.api("POST", f"/users/{user}", ok=(201, 409))
        return self.api("POST", f"/users/{user}/server", json={"profile": profile}, ok=ok)

    def wait_ready(self, user: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{user}").json()["servers"].get("")
            if server and server["ready"]:
                return server
            if server is None or not server.get("pending"):
                pytest.fail(f"{user}'s server is neither starting nor ready: {server}\n{self.logs()}")
            time.sleep(1)
        pytest.fail(f"{user}'s server was not ready within {timeout} s\n{self.logs()}")

    def stop(self, user: str) -> None:
        self.api("DELETE", f"/users/{user}/server", ok=(202, 204, 400))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{user}").json()["servers"]:
                return
            time.sleep(0.5)
        pytest.fail(f"{user}'s server did not stop\n{self.logs()}")

    def container_of(self, user: str) -> tuple[str, dict]:
        """(node name, ``docker inspect`` on that node's own engine) of the user's server container."""
        slug_prefix = f"{PREFIX}-"
        for node in self.cluster.nodes:
            for c in node.client().api.containers(filters={"label": f"org.gpuhub.user={user}"}):
                if c["Names"] and c["Names"][0].lstrip("/").startswith(slug_prefix):
                    return node.name, node.client().api.inspect_container(c["Id"])
        pytest.fail(f"no container of {user} on any node\n{self.logs()}")


@pytest.fixture(scope="module")
def swarm_hub(swarm_cluster, user_image, hub_image):
    manager = swarm_cluster.manager
    work = swarm_cluster.dir / "hub"
    inventories = work / "inventories"
    inventories.mkdir(parents=True)
    for node in swarm_cluster.nodes:
        (inventories / f"{node.name}.toml").write_text(inventory_of(node.name))
    (work / "config.d").mkdir()
    # the hub polls servers every 5 s here (30 s by default): a lost node's servers are seen stopped sooner
    (work / "config.d" / "poll.py").write_text("c.Spawner.poll_interval = 5\n")
    (work / "settings.toml").write_text(settings(user_image, inventories))
    (work / "inventory.toml").write_text("")  # compose mounts it; a Swarm hub reads the nodes' reports instead
    env = {
        **manager.env,
        "COMPOSE_PROJECT_NAME": PREFIX,
        "GPUHUB_DOCKER_SOCKET": str(manager.socket),
        "GPUHUB_SETTINGS_FILE": str(work / "settings.toml"),
        "GPUHUB_CONFIG_D": str(work / "config.d"),
        "GPUHUB_INVENTORY_FILE": str(work / "inventory.toml"),
        "GPUHUB_NETWORK": OVERLAY,
        "GPUHUB_PORT": str(PORT),
        "GPUHUB_BIND": "0.0.0.0",  # inside the manager's namespace: reachable from the test bridge only
        "GPUHUB_ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }
    compose = compose_command()
    subprocess.run([*compose, "up", "-d", "--no-build", "hub"], cwd=REPO, env=env, check=True, timeout=300)
    url = f"http://{MANAGER_ADDRESS}:{PORT}"
    hub = SwarmHub(swarm_cluster, url, "", env, compose)
    try:
        if not answers_within(f"{url}/hub/health", 120, interval=1):
            pytest.fail(f"the hub on the Swarm manager did not become healthy:\n{hub.logs()}")
        made = subprocess.run([*compose, "exec", "-T", "hub", "jupyterhub", "token", "admin"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        hub.token = made.stdout.strip().splitlines()[-1]
        yield hub
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], cwd=REPO, env=env, capture_output=True, timeout=300)
        for service in manager.client().api.services(filters={"label": "org.gpuhub.managed=true"}):
            manager.client().api.remove_service(service["ID"])
        for service in manager.client().api.services(filters={"name": "gpuhub-node-reporter"}):
            manager.client().api.remove_service(service["ID"])


def wait_nodes(hub: SwarmHub, want, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    nodes = []
    while time.monotonic() < deadline:
        nodes = hub.gpuhub("GET", "/nodes").json()["nodes"]
        if want(nodes):
            return nodes
        time.sleep(1)
    pytest.fail(f"the nodes did not get there within {timeout} s: {nodes}\n{hub.logs()}")


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
    assert host["Memory"] == 1024**3 and host["NanoCpus"] > 0
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
def holders(hub: SwarmHub) -> dict[str, list[str]]:
    """Device index → who holds it, from the admin API."""
    return {d["index"]: sorted(h["user"] for h in d["holders"]) for d in hub.gpuhub("GET", "/gpus").json()["devices"]}


def live_allocations(hub: SwarmHub) -> list[tuple[str, str]]:
    """(device index, holder) of every live allocation, from the admin API."""
    return sorted((d["index"], h["user"]) for d in hub.gpuhub("GET", "/gpus").json()["devices"] for h in d["holders"])


def server_gone(hub: SwarmHub, user: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not hub.api("GET", f"/users/{user}").json()["servers"]:
            return
        time.sleep(1)
    pytest.fail(f"the hub did not see {user}'s server stop within {timeout} s\n{hub.logs()}")


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
    subprocess.run([*swarm_hub.compose, "up", "-d", "--no-build", "hub"], cwd=REPO, env=swarm_hub.env, check=True, timeout=300)
    assert answers_within(f"{swarm_hub.url}/hub/health", 120, interval=1), swarm_hub.logs()
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    assert live_allocations(swarm_hub) == before
    assert "kept allocation" in swarm_hub.logs(200)
    r = requests.get(f"{swarm_hub.url}/user/dave/api/status", headers={"Authorization": f"token {swarm_hub.token}"}, timeout=30)
    assert r.status_code == 200


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
        # its GPU stays held for dave, and no other start gets a GPU on a lost node
        r = swarm_hub.start("erin", "gpu-1", ok=(503,))
        assert "GPU" in r.json()["message"]
        # dave's home is on the lost node: his start says so
        r = swarm_hub.start("dave", "cpu-small", ok=(503,))
        assert "worker2" in r.json()["message"] and "takes no new servers" in r.json()["message"]
    finally:
        worker2.start_engine()
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    deadline = time.monotonic() + 60
    while ("worker2/0", "dave") in live_allocations(swarm_hub) and time.monotonic() < deadline:
        time.sleep(1)
    assert ("worker2/0", "dave") not in live_allocations(swarm_hub), "the lost node's GPU was not handed back after it returned"
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
        r = swarm_hub.start("fred", "gpu-1", ok=(503,))  # worker1's are alice's; worker2's is drained
        assert "GPU" in r.json()["message"]
    finally:
        manager.docker("node", "update", "--availability", "active", worker2.node_id)
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    swarm_hub.start("fred", "gpu-1")
    swarm_hub.wait_ready("fred")
    assert swarm_hub.container_of("fred")[0] == "worker2"
    swarm_hub.stop("fred")
    swarm_hub.stop("alice")
    assert live_allocations(swarm_hub) == []
