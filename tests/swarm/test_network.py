"""Network isolation on the Swarm's overlay (docs/security.md, "On the network"): the hub deploys
gpuhub-netguard on every node but its own (docker-compose.yml's ``netguard`` serves the manager), told
the hub container's overlay address; a user's server on a worker accepts only the hub and its proxy,
and reaches the hub's API but not another user's server, on the same node or another.
"""

from __future__ import annotations

import subprocess
import time

from gpuhub.policy.services import NETGUARD_SERVICE
from tests.swarm.cluster import OVERLAY
from tests.swarm.swarmhub import PREFIX, live_allocations, wait_nodes

CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(5)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(f"failed: {e}")
"""


def hub_overlay_address(hub) -> str:
    ids = hub.cluster.manager.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PREFIX}",
                                     "--filter", "label=com.docker.compose.service=hub").stdout.split()
    assert len(ids) == 1, ids
    info = hub.cluster.manager.client().api.inspect_container(ids[0])
    return info["NetworkSettings"]["Networks"][OVERLAY]["IPAddress"]


def run_in(hub, user: str, *command: str) -> subprocess.CompletedProcess:
    node, info = hub.container_of(user)
    return hub.cluster.node(node).docker("exec", info["Id"], *command)


def connect_from(hub, user: str, address: str, port: int) -> str:
    done = run_in(hub, user, "python3", "-c", CONNECT, address, str(port))
    return (done.stdout + done.stderr).strip()


def netguard_containers(hub) -> list[str]:
    """The nodes whose own engine runs a gpuhub-netguard container (a task told to stop still runs
    until its container ends)."""
    filters = {"label": f"com.docker.swarm.service.name={NETGUARD_SERVICE}"}
    return [node.name for node in hub.cluster.nodes for _ in node.client().api.containers(filters=filters)]


def netguards_running(hub) -> dict[str, list[str]]:
    """Node hostname → the command of its running gpuhub-netguard task."""
    api = hub.cluster.manager.client().api
    hostnames = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
    tasks = api.tasks(filters={"service": NETGUARD_SERVICE, "desired-state": "running"})
    return {hostnames[t["NodeID"]]: t["Spec"]["ContainerSpec"]["Command"] for t in tasks if t["Status"]["State"] == "running"}


def test_users_servers_on_the_workers_reach_the_hub_and_not_each_other(swarm_hub):
    hub = swarm_hub
    wait_nodes(hub, lambda ns: len(ns) == 3 and all(n["takes_servers"] for n in ns))
    hub_address = hub_overlay_address(hub)
    deadline = time.monotonic() + 120
    while (guards := netguards_running(hub)).keys() != {"worker1", "worker2"} and time.monotonic() < deadline:
        time.sleep(1)
    # on the two workers only (the manager's is compose's), each told the hub's overlay address
    assert guards.keys() == {"worker1", "worker2"}, f"{guards}\n{hub.logs()}"
    assert all(f"--hub-address={hub_address}" in command for command in guards.values()), guards
    try:
        for user in ("nina", "omar"):
            hub.start(user, "gpu-1")
        for user in ("nina", "omar"):
            hub.wait_ready(user)
        nodes = {user: hub.container_of(user)[0] for user in ("nina", "omar")}
        assert set(nodes.values()) <= {"worker1", "worker2"}, nodes
        # the proxy (in the hub's container) reaches both servers, and both servers reach the hub's API
        for user in ("nina", "omar"):
            hub.wait_server_answers(user, time.monotonic(), timeout=60)

        _, nina = hub.container_of("nina")
        nina_address = nina["NetworkSettings"]["Networks"][OVERLAY]["IPAddress"]
        run_in(hub, "nina", "sh", "-c", "echo secret > /tmp/secret.txt")
        node = hub.cluster.node(nodes["nina"])
        node.docker("exec", "-d", nina["Id"], "python3", "-m", "http.server", "9000", "--directory", "/tmp")
        deadline = time.monotonic() + 20
        while connect_from(hub, "nina", "127.0.0.1", 9000) != "connected" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert connect_from(hub, "nina", "127.0.0.1", 9000) == "connected"  # nina's own server runs

        # omar (a worker, maybe nina's, maybe the other) is refused at nina's web server and her Jupyter port
        assert connect_from(hub, "omar", nina_address, 9000) == "refused"
        assert connect_from(hub, "omar", nina_address, 8888) == "refused"
        # the hub's API answers him; the hub's other ports (its proxy's, which the edge reaches) do not
        assert connect_from(hub, "omar", hub_address, 8081) == "connected"
        assert connect_from(hub, "omar", hub_address, 8000) == "refused"

        # the rules in omar's own namespace, read from outside (his task's process on the shared kernel)
        _, omar = hub.container_of("omar")
        rules = subprocess.run(["nsenter", f"--net=/proc/{omar['State']['Pid']}/ns/net", "iptables-save", "-t", "filter"],
                               capture_output=True, text=True, check=True).stdout
        assert ":INPUT DROP" in rules and ":OUTPUT DROP" in rules
        assert f"-A INPUT -s {hub_address}/32 -j ACCEPT" in rules
        assert "-A OUTPUT -d 169.254.169.254/32 -j REJECT" in rules
        assert f"-A OUTPUT -d {hub_address}/32 -p tcp -m tcp --dport 8081 -j ACCEPT" in rules
    finally:
        for user in ("nina", "omar"):
            hub.stop(user)


def test_group_work_is_refused_on_a_swarm_naming_the_field_and_nothing_is_made(swarm_hub):
    r = swarm_hub.gpuhub("PUT", "/sessions/lab-swarm", ok=(400,), json={
        "profile": "cpu-small", "windows": [{"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T11:00:00Z"}], "group_work": True})
    assert "group_work" in r.text and "one Docker host" in r.text
    swarm_hub.gpuhub("GET", "/sessions/lab-swarm", ok=(404,))


def test_a_server_on_a_node_without_netguard_never_runs_and_its_start_fails_naming_it(swarm_hub):
    hub = swarm_hub
    wait_nodes(hub, lambda ns: len(ns) == 3 and all(n["takes_servers"] for n in ns))
    # netguard taken off the workers, as a site whose node lacks it (or whose task failed) has it
    hub.cluster.manager.docker("service", "update", "--detach", "--constraint-add", "node.role==manager", NETGUARD_SERVICE)
    try:
        deadline = time.monotonic() + 60
        while netguard_containers(hub) and time.monotonic() < deadline:
            time.sleep(1)
        assert not netguard_containers(hub)
        hub.start("pia", "gpu-1")
        deadline = time.monotonic() + 120  # rules_wait (30 s), the task's end, the check's pace
        while hub.api("GET", "/users/pia").json()["servers"] and time.monotonic() < deadline:
            time.sleep(1)
        assert not hub.api("GET", "/users/pia").json()["servers"], f"pia's server is still there\n{hub.logs()}"
        assert "is gpuhub-netguard running on that node" in hub.logs(200)
        assert not [h for _, h in live_allocations(hub) if h == "pia"]  # its GPU went back
    finally:
        hub.cluster.manager.docker("service", "update", "--detach", "--constraint-rm", "node.role==manager", NETGUARD_SERVICE)
        deadline = time.monotonic() + 60
        while netguards_running(hub).keys() != {"worker1", "worker2"} and time.monotonic() < deadline:
            time.sleep(1)
    assert netguards_running(hub).keys() == {"worker1", "worker2"}
