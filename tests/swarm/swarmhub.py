"""The hub on a real Swarm, for the tests that use it: docker-compose.yml's hub on the manager
(``[engine] kind = "swarm"``), the user image from the manager's registry, a node reporter on every
node reading that node's SIMULATED inventory (worker1: 2 NVLinked GPUs, worker2: 1, the manager:
none) and SIMULATED activity file. ``compose_hub`` starts it (conftest's package fixture
``swarm_hub``); ``SwarmHub`` and the helpers below drive it through the hub's REST API as a user
would and look at what lands where on each worker's own engine.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from gpuhub.config.caddyfile import caddyfile
from gpuhub.config.schema import parse_settings
from gpuhub.policy.services import NETGUARD_SERVICE, REPORTER_SERVICE
from tests.e2e.conftest import COMPOSED_HUB_TABLE, compose_command
from tests.hubprocess import REPO, answers_within
from tests.swarm.cluster import MANAGER_ADDRESS, OVERLAY, Cluster

PREFIX = "gpuhubsw"
NOISE = re.compile(r" 20[04] (GET|POST) /hub/api/(gpuhub/v1/(nodes|sessions|gpus|activity|queue)|users)|/api/status|requesting spawn on behalf")
PORT = 8000
UP = ["up", "-d", "--no-build", "hub", "edge"]  # the hub and its front door (docker-compose.yml)
NODE_GPUS = {"worker1": (0, 1), "worker2": (2,)}  # simulated GPU numbers per node; the manager has none


def write_activity(inventories: Path, node: str, utilisation: dict[int, int]) -> None:
    """The SIMULATED activity file ``node``'s reporter reads: GPU number → utilisation percent."""
    devices = {gpu_uuid(n): {"utilisation": u, "memory": {}} for n, u in utilisation.items()}
    (inventories / f"{node}-activity.json").write_text(json.dumps({"devices": devices}))


def gpu_uuid(n: int) -> str:
    return f"GPU-5{n:07d}-0000-0000-0000-000000000000"


def inventory_of(node: str, node_gpus: dict = NODE_GPUS) -> str:
    gpus = node_gpus.get(node, ())
    text = ""
    for n in gpus:
        peers = [gpu_uuid(p) for p in gpus if p != n]
        text += f'[[gpus]]\nuuid = "{gpu_uuid(n)}"\nname = "NVIDIA H100 80GB HBM3"\nmemory = "80G"\nnvlink_peers = {json.dumps(peers)}\n\n'
    return text


def node_sockets(cluster: Cluster) -> str:
    """``[engine] node_docker_socket`` for the test cluster: every node's engine listens on its own path."""
    return f"{cluster.dir}/{{node}}/docker.sock"


def settings(image: str, inventories: Path, kind: str = "swarm", shared_homes: Path | None = None, node_socket: str = "/var/run/docker.sock") -> str:
    """The hub's settings.toml: ``kind = "swarm"`` (each node's files under ``inventories``; homes on
    the nodes, or in ``shared_homes``; ``node_socket``: ``node_sockets``), or ``"docker"``: the same hub on
    the manager's engine alone, its inventory compose's mounted file (``benchmarks/swarm.py``'s one-host variant)."""
    if kind == "swarm":
        homes = f'homes = "shared"\nshared_homes = "{shared_homes}"' if shared_homes else 'homes = "node"'
        engine = f'''[engine]
kind = "swarm"
report_interval = 3
node_docker_socket = "{node_socket}"
{homes}

[gpus]
inventory = "file:{inventories}/{{node}}.toml"
exposure = "env-only"
queue_timeout = 600

[reclaim]
idle_timeout = 3600
warn_before = 300
check_interval = 5
activity = "file:{inventories}/{{node}}-activity.json"
'''
    else:
        engine = '''[engine]
kind = "docker"

[gpus]
inventory = "file:/srv/gpuhub/inventory.toml"
exposure = "env-only"
queue_timeout = 600
'''
    return COMPOSED_HUB_TABLE + f'''
[https]
mode = "off"

[spawner]
network = "{OVERLAY}"
allowed_images = ["{image}"]
home_volume = "{PREFIX}-home-{{slug}}"
container_name = "{PREFIX}-{{slug}}"
start_timeout = 180

{engine}
[sessions]
check_interval = 2

[[quotas]]
max_gpus = 3

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
    inventories: Path  # every node's SIMULATED inventory and activity files

    def api(self, method: str, path: str, ok=(200, 201, 202, 204), **kw) -> requests.Response:
        r = requests.request(method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"}, timeout=60, **kw)
        assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text[:500]}\n{self.logs()}"
        return r

    def gpuhub(self, method: str, path: str, **kw) -> requests.Response:
        return self.api(method, f"/gpuhub/v1{path}", **kw)

    def logs(self, tail: int = 60) -> str:
        """The hub's last ``tail`` log lines that say something (not the reporters' and pollers' 2xx)."""
        out = subprocess.run([*self.compose, "logs", "--no-color", "--tail=5000", "hub"], cwd=REPO, env=self.env, capture_output=True, text=True)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if not NOISE.search(line)]
        return "\n".join(lines[-tail:])

    def start(self, user: str, profile: str, ok=(201, 202), **options) -> requests.Response:
        self.api("POST", f"/users/{user}", ok=(201, 409))
        return self.api("POST", f"/users/{user}/server", json={"profile": profile, **options}, ok=ok)

    def use_shared_homes(self, shared_homes: Path, user_image: str) -> None:
        """Recreate the hub with ``[engine] homes = "shared"`` in ``shared_homes``, mounted into the
        hub's container as a site does it: a compose override file (``docs/scale-out.md``). The
        database (and so the admin token) stays."""
        work = Path(self.env["GPUHUB_SETTINGS_FILE"]).parent
        (work / "settings.toml").write_text(settings(user_image, self.inventories, "swarm", shared_homes, node_sockets(self.cluster)))
        override = work / "shared-homes.override.yml"
        override.write_text(f"services:\n  hub:\n    volumes:\n      - {shared_homes}:{shared_homes}\n")
        self.compose = [*compose_command(), "-f", str(REPO / "docker-compose.yml"), "-f", str(override)]
        subprocess.run([*self.compose, *UP], cwd=REPO, env=self.env, check=True, timeout=300)
        if not answers_within(f"{self.url}/hub/health", 120, interval=1):
            pytest.fail(f"the hub with shared homes did not become healthy:\n{self.logs()}")

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
        """Stop the user's server and wait until the hub says so and no node runs its container any more
        (the service is removed at once, its task's container a moment later: a next start's container
        must not be mistaken for the old one)."""
        self.api("DELETE", f"/users/{user}/server", ok=(202, 204, 400))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{user}").json()["servers"] and not self.containers_of(user):
                return
            time.sleep(0.5)
        pytest.fail(f"{user}'s server did not stop\n{self.logs()}")

    last_answer = ""

    def server_status(self, user: str, timeout: float = 30) -> int:
        """GET the user's server's ``/api/status`` through the edge and the proxy with the admin's
        token: its status code; on a timeout, a failure with the server's and the hub's logs."""
        try:
            r = requests.get(f"{self.url}/user/{user}/api/status", headers={"Authorization": f"token {self.token}"}, timeout=timeout)
            if r.status_code != 200:  # kept for the failing assertion's message
                node, info = self.container_of(user)
                server_log = self.cluster.node(node).docker("logs", "--tail", "30", info["Id"])
                resolved = self.cluster.node(node).docker(
                    "exec", info["Id"], "python3", "-c", "import socket; print(socket.gethostbyname('hub'))").stdout.strip()
                hub_ids = self.cluster.manager.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PREFIX}",
                                                      "--filter", "label=com.docker.compose.service=hub").stdout.split()
                hub_networks = self.cluster.manager.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", *hub_ids).stdout[:1500]
                self.last_answer = (f"{r.status_code} {r.text[:500]}\n--- {user}'s server on {node} resolves hub to {resolved!r}; the hub's"
                                    f" networks: {hub_networks}\n{server_log.stdout}{server_log.stderr}")
            return r.status_code
        except requests.RequestException as e:
            node, info = self.container_of(user)
            server_log = self.cluster.node(node).docker("logs", "--tail", "40", info["Id"])
            edge = subprocess.run([*self.compose, "logs", "--no-color", "--tail=20", "edge"], cwd=REPO, env=self.env, capture_output=True, text=True)
            pytest.fail(f"{user}'s server did not answer: {e}\n--- its log on {node}\n{server_log.stdout}{server_log.stderr}"
                        f"\n--- edge\n{edge.stdout}\n--- hub\n{self.logs(80)}")

    def wait_server_answers(self, user: str, since: float, timeout: float = 180) -> float:
        """Seconds from ``since`` (a ``time.monotonic()``) until the user's server answers through the proxy
        (its answer needs the hub's API: the server reaches the hub); a failure after ``timeout``."""
        answered = 0
        while time.monotonic() - since < timeout:
            answered = self.server_status(user)
            if answered == 200:
                return time.monotonic() - since
            time.sleep(2)
        pytest.fail(f"{user}'s server did not answer within {timeout} s: {answered}\n{self.last_answer}\n{self.logs(300)}")

    def containers_of(self, user: str) -> list[tuple[str, str]]:
        """(node name, container id) of every running server container of the user, on every node."""
        slug_prefix = f"{PREFIX}-"
        return [
            (node.name, c["Id"])
            for node in self.cluster.nodes
            for c in node.client().api.containers(filters={"label": f"org.gpuhub.user={user}"})
            if c["Names"] and c["Names"][0].lstrip("/").startswith(slug_prefix)
        ]

    def container_of(self, user: str) -> tuple[str, dict]:
        """(node name, ``docker inspect`` on that node's own engine) of the user's server container."""
        for name, container_id in self.containers_of(user):
            return name, self.cluster.node(name).client().api.inspect_container(container_id)
        pytest.fail(f"no container of {user} on any node\n{self.logs()}")


@contextlib.contextmanager
def compose_hub(swarm_cluster, user_image, kind: str = "swarm", node_gpus: dict = NODE_GPUS):
    """docker-compose.yml's hub on the manager (``settings`` says what it is), its admin token; torn
    down after, with what it started. ``node_gpus``: the SIMULATED GPU numbers per node name."""
    manager = swarm_cluster.manager
    work = swarm_cluster.dir / ("hub" if kind == "swarm" else f"hub-{kind}")
    inventories = work / "inventories"
    inventories.mkdir(parents=True)
    for node in swarm_cluster.nodes:
        (inventories / f"{node.name}.toml").write_text(inventory_of(node.name, node_gpus))
        write_activity(inventories, node.name, {n: 100 for n in node_gpus.get(node.name, ())})
    (work / "config.d").mkdir()
    # the hub polls servers every 5 s here (30 s by default): a lost node's servers are seen stopped sooner
    (work / "config.d" / "poll.py").write_text("c.Spawner.poll_interval = 5\nc.JupyterHub.allow_named_servers = True\n")
    site = settings(user_image, inventories, kind, node_socket=node_sockets(swarm_cluster))
    (work / "settings.toml").write_text(site)
    (work / "Caddyfile").write_text(caddyfile(parse_settings(site).https))
    (work / "tls").mkdir()
    # compose mounts it: the one-host hub's inventory (every GPU); a Swarm hub reads the nodes' reports instead
    (work / "inventory.toml").write_text("" if kind == "swarm" else inventory_of("all", {"all": sorted(sum(node_gpus.values(), ()))}))
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
        "GPUHUB_HTTPS_PORT": str(PORT + 1),
        "GPUHUB_SSH_PORT": str(PORT + 2),
        "GPUHUB_CADDYFILE": str(work / "Caddyfile"),  # [https] mode "off": the edge passes plain HTTP (the e2e tier tests HTTPS)
        "GPUHUB_TLS_DIR": str(work / "tls"),
        "GPUHUB_ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }
    compose = compose_command()
    subprocess.run([*compose, *UP], cwd=REPO, env=env, check=True, timeout=300)
    url = f"http://{MANAGER_ADDRESS}:{PORT}"
    hub = SwarmHub(swarm_cluster, url, "", env, compose, inventories)
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
        for name in (REPORTER_SERVICE, NETGUARD_SERVICE):
            for service in manager.client().api.services(filters={"name": name}):
                manager.client().api.remove_service(service["ID"])
        for container in manager.client().api.containers(all=True, filters={"label": "org.gpuhub.managed=true"}):
            manager.client().api.remove_container(container["Id"], force=True, v=True)


def wait_nodes(hub: SwarmHub, want, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    nodes = []
    while time.monotonic() < deadline:
        nodes = hub.gpuhub("GET", "/nodes").json()["nodes"]
        if want(nodes):
            return nodes
        time.sleep(1)
    pytest.fail(f"the nodes did not get there within {timeout} s: {nodes}\n{hub.logs()}")


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


def wait_in_line(hub: SwarmHub, user: str, timeout: float = 30) -> dict:
    """``user``'s row in the GPU wait line (``GET /queue``), once it is there."""
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = hub.gpuhub("GET", "/queue").json()["waiting"]
        mine = [r for r in rows if r["holder"].split(":")[0] == user]
        if mine:
            return mine[0]
        time.sleep(0.5)
    pytest.fail(f"{user} is not in the wait line within {timeout} s: {rows}\n{hub.logs()}")


def hub_overlay_address(hub: SwarmHub) -> str:
    """The hub container's address on the users' overlay (new when its container is)."""
    ids = hub.cluster.manager.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PREFIX}",
                                     "--filter", "label=com.docker.compose.service=hub").stdout.split()
    assert len(ids) == 1, ids
    info = hub.cluster.manager.client().api.inspect_container(ids[0])
    return info["NetworkSettings"]["Networks"][OVERLAY]["IPAddress"]


def netguard_containers(hub: SwarmHub) -> list[str]:
    """The nodes whose own engine runs a gpuhub-netguard container (a task told to stop still runs
    until its container ends)."""
    filters = {"label": f"com.docker.swarm.service.name={NETGUARD_SERVICE}"}
    return [node.name for node in hub.cluster.nodes for _ in node.client().api.containers(filters=filters)]


def netguards_running(hub: SwarmHub) -> dict[str, list[str]]:
    """Node hostname → the command of its running gpuhub-netguard task."""
    api = hub.cluster.manager.client().api
    hostnames = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
    tasks = api.tasks(filters={"service": NETGUARD_SERVICE, "desired-state": "running"})
    return {hostnames[t["NodeID"]]: t["Spec"]["ContainerSpec"]["Command"] for t in tasks if t["Status"]["State"] == "running"}


def wait_netguards_told(hub: SwarmHub, timeout: float = 120) -> dict[str, list[str]]:
    """Once gpuhub-netguard runs on both workers (and nowhere else) told the hub's current overlay
    address and every node's address: node → its command; a failure after ``timeout``."""
    want = f"--hub-address={hub_overlay_address(hub)}"
    nodes = [f"--node-address={node.address}" for node in hub.cluster.nodes]
    deadline = time.monotonic() + timeout
    while True:
        guards = netguards_running(hub)
        if guards.keys() == {"worker1", "worker2"} and all(want in c and all(n in c for n in nodes) for c in guards.values()):
            return guards
        if time.monotonic() > deadline:
            pytest.fail(f"gpuhub-netguard is not running told {want} and {nodes} on the workers: {guards}\n{hub.logs()}")
        time.sleep(1)
