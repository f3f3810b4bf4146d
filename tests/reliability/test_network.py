"""Network isolation on the real engine ([network], gpuhub-netguard; docs/security.md, "Network"), tried
from where an attacker stands: user code in one container aiming at another user's open port, at the
host's other services, at the world. The hub runs on the host here (the harness), so "the hub" is the
bridge's gateway address on the hub API's port, and the proxy connects from that address.

- alice serves a file on port 9000; bob cannot connect to it (refused), while the proxy's side (the
  host) and alice herself can;
- bob reaches the hub's API; a listener on the host's bridge address (standing in for the engine's TCP
  port, the database, SSH) refuses him;
- the instance-metadata rule is checked by reading the rules installed in the container (no traffic is
  sent to that address: it is not a host of ours);
- egress: a server in a network namespace made by the test, at a public-range address, is reached from
  a hub whose egress is "allowed" and refused from one whose egress is "denied";
- a classroom session with group work: its students reach each other's servers, nobody else does,
  and its network goes with the session;
- with no netguard running, a start fails (saying why) instead of running unisolated.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import subprocess
import sys
import threading
import time

import docker.errors
import pytest

from tests.hubprocess import HubProcess, bridge_gateway, free_port, start_netguard, stop_netguard
from tests.reliability.conftest import PREFIX, profiles
from tests.reliability.test_security import container_of, py, servers_running

USERS = ("net-alice", "net-bob")
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(5)\n"
    "try: s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
    "except ConnectionRefusedError: print('refused')\n"
    "except OSError as e: print(type(e).__name__)\n"
)
NETNS, HOST_SIDE, NS_SIDE = "gpuhubrel-egress", "gpuhubrel-eg0", "gpuhubrel-eg1"
WORLD = "198.18.0.2"  # the benchmarking range (RFC 2544): not private, so "the internet" to the rules
INSTRUCTOR_ROLE = """
c.JupyterHub.load_roles.extend([{"name": "net-instructor", "scopes": ["custom:gpuhub:admin"], "services": ["gpuhub-harness"]}])
"""


def address_of(container, network: str = "bridge") -> str:
    """The container's address on ``network`` (the harness's users' network: Docker's default bridge)."""
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def connect_from(container, host: str, port: int) -> str:
    return py(container, CONNECT, host, port)


def rules_of(container, program: str = "iptables") -> str:
    container.reload()
    pid = container.attrs["State"]["Pid"]
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", program, "-S"], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def two_isolated(rel_hub):
    with servers_running(rel_hub, USERS):
        yield rel_hub


@contextlib.contextmanager
def listener(host: str):
    """A TCP listener on the host at ``host``; yields its port."""
    server = socket.create_server((host, 0))
    server.settimeout(0.5)
    done = threading.Event()

    def serve():
        while not done.is_set():
            with contextlib.suppress(OSError):
                server.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(2)
        server.close()


def test_another_users_open_port_refuses_while_the_proxys_side_reaches_it(two_isolated):
    hub = two_isolated
    alice, bob = container_of(hub, "net-alice"), container_of(hub, "net-bob")
    alice.exec_run(["sh", "-c", "cd ~ && echo secret > secret.txt && python3 -m http.server 9000"], detach=True)
    deadline = time.monotonic() + 20
    while connect_from(alice, "127.0.0.1", 9000) != "open" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert connect_from(alice, "127.0.0.1", 9000) == "open"  # her own server listens
    with socket.create_connection((address_of(alice), 9000), timeout=5):
        pass  # the host (where the proxy runs here) reaches any port she opens
    assert connect_from(bob, address_of(alice), 9000) == "refused"
    assert connect_from(bob, address_of(alice), 8888) == "refused"  # her Jupyter server too, straight
    fetch = "import urllib.request, sys\ntry: urllib.request.urlopen(sys.argv[1], timeout=5); print('read')\nexcept OSError as e: print('no', e)"
    assert py(bob, fetch, f"http://{address_of(alice)}:9000/secret.txt").startswith("no")


def test_the_hub_api_answers_and_the_hosts_other_ports_refuse(two_isolated):
    hub = two_isolated
    bob = container_of(hub, "net-bob")
    gateway = bridge_gateway(hub.docker)
    assert connect_from(bob, gateway, hub.hub_port) == "open"
    with listener(gateway) as port:
        with socket.create_connection((gateway, port), timeout=5):
            pass  # it listens: the host reaches it
        assert connect_from(bob, gateway, port) == "refused"  # as the engine's TCP port, the database, SSH would
    installed = rules_of(bob)
    assert "-P INPUT DROP" in installed and "-P OUTPUT DROP" in installed, installed
    assert "-P OUTPUT DROP" in rules_of(bob, "ip6tables")
    out = [line for line in installed.splitlines() if line.startswith("-A OUTPUT")]
    metadata = next(i for i, line in enumerate(out) if line.startswith("-A OUTPUT -d 169.254.169.254/32 -j REJECT"))
    before = [line for line in out[:metadata] if "-o lo" not in line and "ESTABLISHED" not in line]
    assert all("--dport 53 " in line for line in before), before  # only DNS comes before it


def ip(*args: str, netns: str | None = None) -> None:
    prefix = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def world():
    """A web server in a network namespace made here, at WORLD, routed from the host: the internet."""
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_SIDE], capture_output=True)
    ip("netns", "add", NETNS)
    server = None
    try:
        ip("link", "add", HOST_SIDE, "type", "veth", "peer", "name", NS_SIDE)
        ip("link", "set", NS_SIDE, "netns", NETNS)
        ip("addr", "add", "198.18.0.1/30", "dev", HOST_SIDE)
        ip("link", "set", HOST_SIDE, "up")
        ip("addr", "add", f"{WORLD}/30", "dev", NS_SIDE, netns=NETNS)
        ip("link", "set", NS_SIDE, "up", netns=NETNS)
        ip("link", "set", "lo", "up", netns=NETNS)
        port = free_port()
        server = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{NETNS}", sys.executable, "-m", "http.server", str(port), "--bind", WORLD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((WORLD, port), timeout=1):
                break
            time.sleep(0.1)
        yield port
    finally:
        if server:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "link", "del", HOST_SIDE], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


GROUP_SUBNETS = "10.199.0.0/16"  # an unused range of this machine (a test cluster uses 10.213/10.214)


@pytest.fixture(scope="module")
def denied_hub(tmp_path_factory, rel_hub):
    """A second hub on the same engine whose [network] egress is "denied" (a short rules_wait)."""
    workdir = tmp_path_factory.mktemp("deniedhub")
    (workdir / "inventory.toml").write_text((rel_hub.workdir / "inventory.toml").read_text())
    hub = HubProcess(workdir, prefix=f"{PREFIX}dn", profiles=profiles(workdir / "inventory.toml"), extra_config=INSTRUCTOR_ROLE)
    hub.more_settings = '[network]\negress = "denied"\nrules_wait = 5\n'
    hub.session_settings = f'group_subnets = "{GROUP_SUBNETS}"'  # group networks from a range of their own
    hub.extra_images = list(rel_hub.extra_images)  # the never-ready profile's image
    with hub.running():
        yield hub


def test_egress_reaches_the_world_where_allowed_and_not_where_denied(two_isolated, world, denied_hub):
    hub = two_isolated
    assert connect_from(container_of(hub, "net-alice"), WORLD, world) == "open"
    denied_hub.create_user("net-carol")
    denied_hub.start_server("net-carol", {"profile": "cpu-test"})
    carol = container_of(denied_hub, "net-carol")
    assert connect_from(carol, WORLD, world) == "refused"
    gateway = bridge_gateway(hub.docker)
    assert connect_from(carol, gateway, denied_hub.hub_port) == "open"  # its own hub's API still answers
    denied_hub.stop_server("net-carol")


def test_a_group_work_sessions_students_reach_each_other_and_nobody_else_does(two_isolated, denied_hub):
    hub, now = denied_hub, datetime.datetime.now(datetime.timezone.utc)
    window = {"start": (now - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%MZ"),
              "end": (now + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")}
    api = f"{hub.url}/hub/api/gpuhub/v1/sessions/netlab"
    hub.session.put(api, json={"profile": "cpu-test", "windows": [window], "group_work": True}, timeout=30).raise_for_status()
    hub.session.post(f"{api}/roster", data=b"net-erin\nnet-frank", headers={"Content-Type": "text/csv"}, timeout=30).raise_for_status()
    assert hub.session.get(api, timeout=30).json()["group_work"] is True
    for user in ("net-erin", "net-frank"):
        hub.start_server(user, {"session": "netlab"})
    erin, frank = container_of(hub, "net-erin"), container_of(hub, "net-frank")
    group = hub.docker.networks.get("gpuhub-group-netlab")
    assert {erin.id, frank.id} <= {c.id for c in group.containers}
    erin_there = address_of(erin, "gpuhub-group-netlab")
    erin.exec_run(["sh", "-c", "cd ~ && python3 -m http.server 9000"], detach=True)
    deadline = time.monotonic() + 20
    while connect_from(frank, erin_there, 9000) != "open" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert connect_from(frank, erin_there, 9000) == "open"  # group work
    # known there by her name (the engine's DNS answers it where the users' network is a user-defined
    # one, as docker-compose.yml's; the harness's default bridge gives containers the host's resolver)
    assert "net-erin" in erin.attrs["NetworkSettings"]["Networks"]["gpuhub-group-netlab"]["Aliases"]
    assert connect_from(container_of(two_isolated, "net-bob"), address_of(erin), 9000) == "refused"  # not in the class
    group.reload()
    subnet = group.attrs["IPAM"]["Config"][0]
    # a /24 of [sessions] group_subnets, not one of the engine's pools
    assert ipaddress.ip_network(subnet["Subnet"]).subnet_of(ipaddress.ip_network(GROUP_SUBNETS)), subnet
    assert ipaddress.ip_network(subnet["Subnet"]).prefixlen == 24
    group_gateway = subnet.get("Gateway") or str(next(ipaddress.ip_network(subnet["Subnet"]).hosts()))
    with listener(group_gateway) as port:  # the host's address on the group's network: still the host
        assert connect_from(frank, group_gateway, port) == "refused"
    for user in ("net-erin", "net-frank"):
        hub.stop_server(user)
    assert hub.session.delete(api, timeout=30).status_code == 204
    with pytest.raises(docker.errors.NotFound):
        hub.docker.networks.get("gpuhub-group-netlab")


def test_with_no_netguard_running_a_start_fails_saying_why(two_isolated, denied_hub):
    stop_netguard()  # the test process's one (tests.hubprocess); nothing else runs one on this engine meanwhile
    try:
        denied_hub.create_user("net-dave")
        began = time.monotonic()
        r = denied_hub.api("POST", "/users/net-dave/server", {"profile": "cpu-test"})
        # failed within the request's 10 s (JupyterHub's slow_spawn_timeout): 503 and why; later, the server goes
        assert r.status_code in (202, 503), r.text
        if r.status_code == 503:
            assert "gpuhub-netguard has not written its network rules within 5 s" in r.json()["message"], r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            server = denied_hub.api("GET", "/users/net-dave").json()["servers"].get("")
            if not server:
                break
            time.sleep(0.5)
        assert not denied_hub.api("GET", "/users/net-dave").json()["servers"].get(""), "a server ran without its network rules"
        assert time.monotonic() - began < 20  # rules_wait (5 s) and the check's pace, not the start timeout (120 s)
        assert "gpuhub-netguard has not written its network rules within 5 s" in denied_hub.log_path.read_text()
    finally:
        start_netguard()
