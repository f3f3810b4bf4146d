"""The security boundary, tried from the places an attacker stands: inside a user's container, with
another user's credentials, from a page on the hub's origin (fetch metadata of an <img>/<iframe>),
and with crafted image and server names. docs/security.md states the model these tests hold up.

- inside a user container: every process runs as uid 1000 with no-new-privileges and no capability
  (effective, permitted or bounding); no Docker socket, no Docker API; the hub's database port is
  unreachable; the only Docker volume mounted is the user's own home;
- only allowed images spawn, however the name is spelled (CVE-2023-48311);
- a user's token opens neither another user's server, nor its GPU metrics, nor its environment-check
  report, through the proxy or straight at the other container;
- a start link fetched by an image or a frame, or followed by a page's script (fetch metadata), starts
  nothing, and a no-cors POST without the form's token is refused (CVE-2026-40864);
- named servers cannot reach or collide with another user's server (CVE-2020-15110).
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest
import requests

from tests.hubprocess import USER_IMAGE, bridge_gateway, login, token_of
from tests.reliability.audit import containers, servers

USERS = ("sec-alice", "sec-bob")
SINGLEUSER_PATHS = ("api/status", "gpuhub/api/v1/gpus", "gpuhub/api/v1/envcheck")


@contextlib.contextmanager
def servers_running(hub, users):
    """Each of ``users`` with a running CPU server (started together), stopped at the end."""
    for user in users:
        hub.create_user(user)
        hub.api("POST", f"/users/{user}/server", {"profile": "cpu-test"})
    for user in users:
        hub.wait_ready(user)
    try:
        yield hub
    finally:
        for user in users:
            hub.stop_server(user)


@pytest.fixture(scope="module")
def two_servers(rel_hub):
    """alice and bob, each with a running CPU server."""
    with servers_running(rel_hub, USERS):
        yield rel_hub


def container_of(hub, user: str, server: str = ""):
    (c,) = [
        hub.docker.containers.get(c["Id"]) for c in containers(hub)
        if c["Labels"].get("org.gpuhub.user") == user and c["Labels"].get("org.gpuhub.server", "") == server
    ]
    return c


def sh(container, script: str) -> str:
    return run(container, "sh", "-c", script)


def py(container, code: str, *args) -> str:
    return run(container, "python3", "-c", code, *map(str, args))


def run(container, *argv: str) -> str:
    """Run ``argv`` inside the container as its user; its output (it must succeed)."""
    code, out = container.exec_run(list(argv))
    assert code == 0, out.decode()
    return out.decode().strip()


def test_inside_a_user_container(two_servers):
    hub = two_servers
    alice = container_of(hub, "sec-alice")
    # every process in the container, the server itself included
    statuses = py(alice, (
        "import glob, re\n"
        "for p in glob.glob('/proc/[0-9]*/status'):\n"
        "    try: s = open(p).read()\n"
        "    except OSError: continue\n"
        "    f = dict(re.findall(r'^(\\w+):\\s*(.*)$', s, re.M))\n"
        "    print(f['Name'], f['Uid'].split()[0], f['NoNewPrivs'], f['CapEff'], f['CapPrm'], f['CapBnd'])"
    )).splitlines()
    names = {line.split()[0] for line in statuses}
    assert {"tini", "jupyterhub-sin"} & names, statuses
    for line in statuses:
        name, uid, nnp, eff, prm, bnd = line.split()
        assert uid != "0" and uid == "1000", line
        assert nnp == "1", line
        assert eff == prm == bnd == "0000000000000000", line
    # no Docker socket, no Docker API on the host's bridge address
    gateway = bridge_gateway(hub.docker)
    assert sh(alice, "ls /var/run/docker.sock /run/docker.sock 2>&1 || true").count("No such file") == 2
    assert "DOCKER_HOST" not in sh(alice, "env")
    probe = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try: s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
        "except OSError as e: print('closed', e)\n"
    )
    for port in (2375, 2376, hub.pg.port):  # the engine's TCP ports; the hub's PostgreSQL
        out = py(alice, probe, gateway, port)
        assert out.startswith("closed"), (port, out)
    # the only Docker volume it mounts is its own home; bob's home is not there by any path
    mountinfo = sh(alice, "cat /proc/self/mountinfo")
    volumes = set(re.findall(r"/volumes/([^/\s]+)/_data", mountinfo))
    own_home = next(m["Name"] for m in alice.attrs["Mounts"] if m["Destination"] == "/home/jovyan")
    assert volumes == {own_home}, volumes
    bob_home = next(m["Name"] for m in container_of(hub, "sec-bob").attrs["Mounts"] if m["Destination"] == "/home/jovyan")
    assert bob_home not in mountinfo
    assert sh(alice, "ls /var/lib/docker 2>&1 || true").endswith("No such file or directory")


@pytest.mark.parametrize(
    "image",
    [
        "ubuntu:24.04",
        "docker.io/gpuhub/pytorch-cuda:cpu",  # the allowed image, spelled with its registry
        f"{USER_IMAGE} ",
        f"{USER_IMAGE}@sha256:{'0' * 64}",
        USER_IMAGE.upper(),
        "gpuhub/pytorch-cuda",
        "gpuhub/pytorch-cuda:latest",
        "--privileged",
        "",
    ],
)
def test_only_allowed_images_spawn(rel_hub, image):
    hub = rel_hub
    hub.create_user("sec-images")
    before = {c["Id"] for c in containers(hub)}
    r = hub.api("POST", "/users/sec-images/server", {"profile": "cpu-test", "image": image})
    if image == "":  # no image asked: the profile's own, which is allowed
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("sec-images")
        assert container_of(hub, "sec-images").image.tags == [USER_IMAGE]
        hub.stop_server("sec-images")
        return
    assert r.status_code in (400, 403), (image, r.status_code, r.text)
    assert "sec-images" not in servers(hub)
    assert {c["Id"] for c in containers(hub)} == before


def test_a_user_cannot_reach_another_users_server_metrics_or_report(two_servers):
    hub = two_servers
    alice = token_of(hub, "sec-alice")
    as_alice = {"Authorization": f"token {alice}"}
    for path in SINGLEUSER_PATHS:
        own = requests.get(f"{hub.user_server_url('sec-alice')}{path}", headers=as_alice, timeout=30)
        assert own.status_code in (200, 404), (path, own.status_code)  # 404: no report run yet
        for method in ("GET", "POST") if path.endswith("envcheck") else ("GET",):
            r = requests.request(method, f"{hub.user_server_url('sec-bob')}{path}", headers=as_alice, timeout=60, allow_redirects=False)
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
    r = requests.get(f"{hub.url}/hub/api/users/sec-bob", headers=as_alice, timeout=30)
    assert r.status_code in (403, 404), r.text
    r = requests.delete(f"{hub.url}/hub/api/users/sec-bob/server", headers=as_alice, timeout=30)
    assert r.status_code in (403, 404), r.text
    # straight at bob's container from inside alice's, with alice's own server token: the network refuses
    # the connection ([network] isolation: only the hub and its proxy may connect; test_network.py)
    bob_ip = next(iter(container_of(hub, "sec-bob").attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    probe = (
        "import os, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "try: print(urllib.request.urlopen(req, timeout=10).status)\n"
        "except urllib.error.HTTPError as e: print(e.code)\n"
        "except urllib.error.URLError as e: print('refused' if isinstance(e.reason, ConnectionRefusedError) else e.reason)\n"
    )
    for path in SINGLEUSER_PATHS:
        status = py(container_of(hub, "sec-alice"), probe, f"http://{bob_ip}:8888/user/sec-bob/{path}")
        assert status == "refused", (path, status)
    assert servers(hub)["sec-bob"]["ready"]


NO_CORS = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "image"}
FRAME = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "iframe"}
SCRIPTED = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "document"}  # location.href = link
CLICKED = {**SCRIPTED, "Sec-Fetch-User": "?1"}


def test_the_no_cors_spawn_request_is_refused(rel_hub):
    hub = rel_hub
    browser, r = login(hub, "admin", hub.admin_password)
    assert r.status_code == 302
    link = f"{hub.url}/hub/spawn?profile=cpu-test"
    # <img src=link>, <iframe src=link>, a script navigating, on a page of the hub's origin
    for headers in (NO_CORS, FRAME, SCRIPTED):
        r = browser.get(link, headers=headers, allow_redirects=False, timeout=60)
        assert r.status_code == 403, (headers, r.status_code)
        assert "must be opened by you" in r.text
    r = browser.post(f"{hub.url}/hub/spawn", data={"profile": "cpu-test"}, headers={**NO_CORS, "Sec-Fetch-Dest": "empty"}, allow_redirects=False, timeout=60)
    assert r.status_code == 403, r.status_code  # a no-cors form POST without the form's _xsrf token
    time.sleep(1)
    assert "admin" not in servers(hub)
    # the same link clicked by the person starts the server
    r = browser.get(link, headers=CLICKED, allow_redirects=False, timeout=60)
    assert r.status_code == 302, r.text[:300]
    hub.wait_ready("admin")
    hub.stop_server("admin")


@pytest.mark.parametrize("name", ["..%2Fsec-bob", "sec-bob", "%2E%2E", "x%2F..%2F..%2Fsec-bob", "a--b", "-", "x" * 200])
def test_server_names_cannot_cross_users(two_servers, name):
    """(A name that makes JupyterHub's OAuth client id "jupyterhub-user-USER-NAME" longer than 255 characters
    gets a 500 from JupyterHub itself on PostgreSQL, its columns' size,
    with nothing created: see docs/security.md. Named servers are off unless an operator allows them.)"""
    hub = two_servers
    alice = token_of(hub, "sec-alice")
    bob_before = container_of(hub, "sec-bob").id
    r = requests.post(f"{hub.url}/hub/api/users/sec-alice/servers/{name}", headers={"Authorization": f"token {alice}"}, json={"profile": "cpu-test"}, timeout=60)
    assert r.status_code < 500, (name, r.status_code, r.text)
    if r.status_code in (201, 202):  # a name JupyterHub accepts makes alice's own server, nobody else's
        model = hub.api("GET", "/users/sec-alice", expect=200).json()
        (server_name,) = [s for s in model["servers"] if s]
        deadline = time.monotonic() + 120
        while not hub.api("GET", "/users/sec-alice", expect=200).json()["servers"][server_name]["ready"]:
            assert time.monotonic() < deadline, hub.log_tail(30)
            time.sleep(0.5)
        mine = container_of(hub, "sec-alice", server_name)
        assert mine.labels["org.gpuhub.user"] == "sec-alice" and mine.id != bob_before
        hub.api("DELETE", f"/users/sec-alice/servers/{requests.utils.quote(server_name, safe='')}", {"remove": True})
        deadline = time.monotonic() + 60
        while server_name in hub.api("GET", "/users/sec-alice", expect=200).json()["servers"]:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    # bob's server is untouched, and nothing of alice's is labelled bob's
    assert container_of(hub, "sec-bob").id == bob_before and servers(hub)["sec-bob"]["ready"]
    assert all(c["Labels"]["org.gpuhub.user"] != "sec-bob" or c["Id"] == bob_before for c in containers(hub))
