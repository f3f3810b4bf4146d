"""Network isolation on the Swarm's overlay (docs/security.md, "On the network"): the hub keeps
gpuhub-netguard on every node but its own (docker-compose.yml's ``netguard`` serves the manager), told
the hub container's overlay address and every node's address; a user's server on a worker accepts only
the hub and its proxy, and reaches the hub's API but not another user's server nor another node. The
hub's new address after the manager's engine restarts: ``test_hub_across_nodes``.
"""

from __future__ import annotations

import subprocess
import time

from gpuhub.policy.services import NETGUARD_SERVICE
from tests.swarm.cluster import OVERLAY
from tests.swarm.swarmhub import hub_overlay_address, live_allocations, netguard_containers, wait_netguards_told, wait_nodes

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


def run_in(hub, user: str, *command: str) -> subprocess.CompletedProcess:
    node, info = hub.container_of(user)
    return hub.cluster.node(node).docker("exec", info["Id"], *command)


def connect_from(hub, user: str, address: str, port: int) -> str:
    done = run_in(hub, user, "python3", "-c", CONNECT, address, str(port))
    return (done.stdout + done.stderr).strip()


def test_users_servers_on_two_workers_reach_the_hub_and_not_each_other_nor_the_other_nodes(swarm_hub):
    hub = swarm_hub
    wait_nodes(hub, lambda ns: len(ns) == 3 and all(n["takes_servers"] for n in ns))
    hub_address = hub_overlay_address(hub)
    # on the two workers only (the manager's is compose's), told the hub's overlay address and the nodes'
    wait_netguards_told(hub)
    try:
        hub.start("nina", "gpu-2")  # both of worker1's GPUs
        hub.wait_ready("nina")
        hub.start("omar", "gpu-1")  # the one GPU left: worker2's
        hub.wait_ready("omar")
        assert {user: hub.container_of(user)[0] for user in ("nina", "omar")} == {"nina": "worker1", "omar": "worker2"}
        # the proxy (in the hub's container) reaches both servers, and both servers reach the hub's API
        for user in ("nina", "omar"):
            hub.wait_server_answers(user, time.monotonic(), timeout=60)

        _, nina = hub.container_of("nina")
        nina_address = nina["NetworkSettings"]["Networks"][OVERLAY]["IPAddress"]
        run_in(hub, "nina", "sh", "-c", "echo secret > /tmp/secret.txt")
        hub.cluster.node("worker1").docker("exec", "-d", nina["Id"], "python3", "-m", "http.server", "9000", "--directory", "/tmp")
        deadline = time.monotonic() + 20
        while connect_from(hub, "nina", "127.0.0.1", 9000) != "connected" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert connect_from(hub, "nina", "127.0.0.1", 9000) == "connected"  # nina's own server runs

        # omar, on the other worker, is refused at nina's web server and her Jupyter port (his own rules)
        assert connect_from(hub, "omar", nina_address, 9000) == "refused"
        assert connect_from(hub, "omar", nina_address, 8888) == "refused"
        # a container without rules of its own on the overlay, on worker2, is refused by nina's (her INPUT)
        plain = hub.cluster.node("worker2").docker("run", "--rm", "--network", OVERLAY, "--entrypoint", "python3",
                                                   nina["Config"]["Image"], "-c", CONNECT, nina_address, "9000")
        assert plain.stdout.strip() == "refused", plain.stdout + plain.stderr
        # the hub's API answers him; the hub's other ports (its proxy's, which the edge reaches) do not
        assert connect_from(hub, "omar", hub_address, 8081) == "connected"
        assert connect_from(hub, "omar", hub_address, 8000) == "refused"
        # nor does another node: the manager's published edge port (the front door, from the test bridge only)
        manager = hub.cluster.manager.address
        assert connect_from(hub, "omar", manager, 8000) == "refused"

        # the rules in omar's own namespace, read from outside (his task's process on the shared kernel)
        _, omar = hub.container_of("omar")
        rules = subprocess.run(["nsenter", f"--net=/proc/{omar['State']['Pid']}/ns/net", "iptables-save", "-t", "filter"],
                               capture_output=True, text=True, check=True).stdout
        assert ":INPUT DROP" in rules and ":OUTPUT DROP" in rules
        assert f"-A INPUT -s {hub_address}/32 -j ACCEPT" in rules
        assert "-A OUTPUT -d 169.254.169.254/32 -j REJECT" in rules
        assert f"-A OUTPUT -d {hub_address}/32 -p tcp -m tcp --dport 8081 -j ACCEPT" in rules
        for node in hub.cluster.nodes:
            assert f"-A OUTPUT -d {node.address}/32 -j REJECT" in rules, node.name
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
    wait_netguards_told(hub)
