"""The admin API, CLI, accounting and metrics through a real hub on the real engine (simulated
inventory, ``env-only`` exposure, as in ``test_gpu_allocation``).

Covers: RBAC on every route (gpuhub admin user, ordinary user, a read-only service, an admin
service, no token); fuzzed quota payloads and usage queries (hypothesis, 1,000+ cases each): no
5xx, nothing changed by a rejected request; usage records across a hub ``kill -9`` with running
servers; the weekly GPU-hours quota refusing a start with what remains and stopping a running
server with its files kept; force-free; taking a spawn out of the line; the ``gpuhub`` CLI;
``/hub/metrics``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import asyncssh
import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.hubprocess import REPO, USER_IMAGE, container_of, remove_prefixed, token_of
from tests.integration.test_gpu_allocation import hold_every_whole_gpu, make_hub, request_server, wait_until

PREFIX = "gpuhubtest-admin"
READER, OPS = "a" * 48, "b" * 48
ROLES = f"""
c.JupyterHub.load_roles.extend([
    {{"name": "usage-reporter", "scopes": ["custom:gpuhub:read"], "services": ["reporter"]}},
    {{"name": "gpu-ops", "scopes": ["custom:gpuhub:admin", "read:metrics"], "services": ["ops"]}},
])
c.JupyterHub.services.extend([
    {{"name": "reporter", "api_token": "{READER}"}},
    {{"name": "ops", "api_token": "{OPS}"}},
])
"""
ACCOUNTING = """
[accounting]
running_servers = "stop"
check_interval = 2
warn_before = 3600
"""


@pytest.fixture(scope="module")
def admin_hub(tmp_path_factory):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path_factory.mktemp("admin"), prefix=PREFIX)
    hub.extra_config += ROLES
    hub.profiles += ACCOUNTING
    hub.start()
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def call(hub, token, method, path, body=None, **kw):
    headers = {"Authorization": f"token {token}"} if token else {}
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    if data is not None and not isinstance(body, (bytes, str)):
        headers["Content-Type"] = "application/json"
    return requests.request(method, f"{hub.url}/hub/api/gpuhub/v1/{path}", data=data, headers=headers, timeout=30, **kw)


def rules(hub) -> list:
    return call(hub, OPS, "GET", "quotas").json()["rules"]


# --- RBAC -----------------------------------------------------------------------------------------
ROUTES = [
    ("GET", "gpus", None),
    ("GET", "quotas", None),
    ("GET", "users/admin/quota", None),
    ("GET", "usage?format=csv", None),
    ("GET", "queue", None),
    ("PUT", "quotas/group/nobody-group", {"max_gpus": 1}),
    ("DELETE", "quotas/user/admin", None),
    ("POST", "gpus/GPU-00000000-0000-0000-0000-000000000003/free", None),
    ("DELETE", "queue/999999", None),
    ("GET", "users/admin/ssh-keys", None),
    ("POST", "users/admin/ssh-keys", {"key": "not a key"}),
]
READS = {"GET"}
# who: expected status per kind of route ("read" / "write"); writes reach their own 4xx past RBAC
WHO = {
    "admin user": ("admin", 200, "past"),
    "ordinary user": ("plain", 403, 403),
    "reader service": (READER, 200, 403),
    "ops service": (OPS, 200, "past"),
    "no token": (None, 403, 403),
}


@pytest.mark.parametrize("who", list(WHO))
def test_every_route_is_guarded_by_the_gpuhub_scopes(admin_hub, who):
    hub = admin_hub
    token, read_status, write_status = WHO[who]
    if token in ("admin", "plain"):
        token = token_of(hub, token)
    for method, path, body in ROUTES:
        r = call(hub, token, method, path, body)
        expected = read_status if method in READS else write_status
        if expected == "past":  # allowed: the route's own answer (the group does not exist, nothing to remove...)
            assert r.status_code in (200, 204, 400, 404), (who, method, path, r.status_code, r.text)
            assert "not authorized" not in r.text
        else:
            assert r.status_code == expected, (who, method, path, r.status_code, r.text)
        if r.status_code >= 400:
            error = r.json()
            assert set(error) == {"status", "error", "field", "message"} and error["status"] == r.status_code
    # the admin page: for people with the scope; 403 for an ordinary user and for services (they use
    # the API); without credentials, the login page
    page = requests.get(f"{hub.url}/hub/gpuhub/admin", headers={"Authorization": f"token {token}"} if token else {}, timeout=30, allow_redirects=False)
    expected_page = {"admin user": 200, "no token": 302}.get(who, 403)
    assert page.status_code == expected_page, page.text[:300]
    if expected_page == 200:
        assert "GPU admin" in page.text and "gpuhub/static/admin.js" in page.text


# --- bad input: fuzzed, nothing changes -------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["max_gpus", "max_shared_slices", "gpu_hours_per_week", "max_memory", "max_cpus", "profiles", "max_gpu", "", "<b>x</b>"]
)
bodies = st.one_of(
    st.dictionaries(field_names, json_values, max_size=4).map(json.dumps),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.binary(max_size=40),
)
targets = st.sampled_from(["group/fuzz", "user/admin", "default", "team/x", "group/<script>", "user/no-such-user", "group/%00", "group"])


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(target=targets, body=bodies)
def test_fuzzed_quota_payloads_never_5xx_and_a_rejected_one_changes_nothing(admin_hub, target, body):
    hub = admin_hub
    hub.api("POST", "/groups/fuzz")  # exists (201, or 409 the other 999 times)
    before = rules(hub)
    r = call(hub, OPS, "PUT", f"quotas/{target}", body)
    assert r.status_code < 500, (target, body, r.text)
    if r.status_code >= 400:
        assert rules(hub) == before, (target, body, r.text)
        assert r.json()["field"] or r.status_code in (403, 404, 405)
    else:
        call(hub, OPS, "DELETE", f"quotas/{target}")  # leave the next case a clean table


queries = st.dictionaries(
    st.sampled_from(["since", "until", "by", "format", "records", "x"]),
    st.one_of(st.text(max_size=25), st.sampled_from(["2026-11-01", "2026-13-01", "0001-01-01", "9999-12-31T23:59:59Z", "user", "group", "csv", "true"])),
    max_size=4,
)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(query=queries)
def test_fuzzed_usage_queries_never_5xx(admin_hub, query):
    r = call(admin_hub, READER, "GET", "usage", params=query)
    assert r.status_code in (200, 400), (query, r.text)
    if r.status_code == 400:
        assert r.json()["field"] in query or r.json()["field"] == "since"


# --- SSH keys ---------------------------------------------------------------------------------------
def public_key(comment="me@laptop") -> str:
    return asyncssh.generate_private_key("ssh-ed25519", comment=comment).export_public_key().decode().strip()


def keys_of(hub, user) -> list:
    return call(hub, OPS, "GET", f"users/{user}/ssh-keys").json()["keys"]


def test_ssh_keys_belong_to_their_person_and_bad_ones_are_refused(admin_hub, tmp_path):
    hub = admin_hub
    ana, ben = token_of(hub, "ana"), token_of(hub, "ben")
    key = public_key("ana@laptop")
    r = call(hub, ana, "POST", "users/ana/ssh-keys", {"key": key})
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["algorithm"] == "ssh-ed25519" and row["comment"] == "ana@laptop" and row["fingerprint"].startswith("SHA256:")
    mine = call(hub, ana, "GET", "users/ana/ssh-keys").json()
    assert mine["keys"] == [row] and mine["ssh"]["user"] == "ana"
    # a key belongs to one person; nobody adds to or removes from another's keys
    r = call(hub, ben, "POST", "users/ben/ssh-keys", {"key": key})
    assert r.status_code == 409 and "registered by another person" in r.json()["message"] and keys_of(hub, "ben") == []
    assert call(hub, ben, "POST", "users/ana/ssh-keys", {"key": public_key()}).status_code == 403
    assert call(hub, ben, "DELETE", f"users/ana/ssh-keys/{row['id']}").status_code == 403
    assert call(hub, ben, "GET", "users/ana/ssh-keys").status_code == 403
    read_only = hub.api("POST", "/users/ana/tokens", {"scopes": ["read:servers!user=ana"], "expires_in": 600}, expect=201).json()["token"]
    assert call(hub, read_only, "GET", "users/ana/ssh-keys").status_code == 200
    assert call(hub, read_only, "POST", "users/ana/ssh-keys", {"key": public_key()}).status_code == 403  # needs servers for ana
    # refused with the field named, nothing stored
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    for body, field, words in [
        ({"key": private}, "key", "PRIVATE key"),
        ({"key": f'command="id" {public_key()}'}, "key", "authorized_keys options"),
        ({"key": "x" * (1024 * 1024)}, "body", "larger than"),
        ({"key": key, "expires": 3}, "expires", "unknown field 'expires'"),
        (b"[1]", "body", "Accepted: a JSON object"),
    ]:
        r = call(hub, ana, "POST", "users/ana/ssh-keys", body)
        assert r.status_code == 400 and r.json()["field"] == field and words in r.json()["message"], r.text
    assert keys_of(hub, "ana") == [row]
    # the CLI, with ana's own token
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(public_key("ana@desktop") + "\n")
    added = gpuhub_cli(hub, "ssh-key", "add", str(pub), token=ana)
    assert added.returncode == 0 and "added for ana: ssh-ed25519 SHA256:" in added.stdout, added.stderr
    listed = gpuhub_cli(hub, "ssh-key", "list", token=ana).stdout
    assert "ana@laptop" in listed and "ana@desktop" in listed and "SSH is off on this hub" in listed
    second = keys_of(hub, "ana")[1]["id"]
    assert gpuhub_cli(hub, "ssh-key", "remove", str(second), token=ana).returncode == 0
    assert call(hub, ana, "DELETE", f"users/ana/ssh-keys/{row['id']}").status_code == 204
    assert call(hub, ana, "DELETE", f"users/ana/ssh-keys/{row['id']}").status_code == 404
    assert keys_of(hub, "ana") == []
    log = hub.log_path.read_text()
    assert f"gpuhub ssh-keys ana: key {row['id']} ssh-ed25519 {row['fingerprint']} added by ana" in log
    assert f"gpuhub ssh-keys ana: key {row['id']} {row['fingerprint']} removed by ana" in log


VALID_KEY = public_key()
key_texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from([VALID_KEY, VALID_KEY.replace("AAAA", "BBBB", 1), VALID_KEY + "\n" + VALID_KEY, "ssh-rsa AAAAB3NzaC1yc2E=", "ssh-ed25519"]),
    st.builds(lambda k, cut: k[:cut], st.just(VALID_KEY), st.integers(0, len(VALID_KEY))),
    st.builds(lambda k, junk: k + " " + junk, st.just(VALID_KEY), st.text(max_size=300)),
)
key_bodies = st.one_of(
    st.builds(lambda t: {"key": t}, key_texts),
    st.dictionaries(st.sampled_from(["key", "Key", "keys", ""]), json_values, max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=key_bodies)
def test_fuzzed_key_uploads_never_5xx_and_a_refused_one_stores_nothing(admin_hub, body):
    hub = admin_hub
    before = keys_of(hub, "admin")
    r = call(hub, OPS, "POST", "users/admin/ssh-keys", body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        assert keys_of(hub, "admin") == before and (r.json()["field"] or r.status_code == 409), (body, r.text)
    else:
        call(hub, OPS, "DELETE", f"users/admin/ssh-keys/{r.json()['id']}")


# --- accounting -----------------------------------------------------------------------------------
def records(hub) -> list[dict]:
    text = call(hub, OPS, "GET", "usage", params={"format": "csv", "records": "true", "since": "2026-01-01"}).text
    return list(csv.DictReader(io.StringIO(text)))


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.rstrip("Z"))


def test_usage_records_across_a_hub_kill_9_with_running_servers(admin_hub):
    hub = admin_hub
    request_server(hub, "acc-run", "gpu-1")
    request_server(hub, "acc-gone", "gpu-shared")
    hub.wait_ready("acc-run")
    hub.wait_ready("acc-gone")
    time.sleep(5)  # a few polls: the records' last_seen moves
    opened = {r["user"]: r for r in records(hub) if r["user"].startswith("acc-")}
    assert set(opened) == {"acc-run", "acc-gone"} and not any(r["end"] for r in opened.values())
    assert opened["acc-run"]["share"] == "1" and opened["acc-gone"]["share"] == "0.25"  # 20G of 80G

    hub.process.send_signal(signal.SIGKILL)
    killed = datetime.utcnow()
    hub.process.wait()
    hub.stop()
    container_of(hub, "acc-gone").remove(force=True)  # dies while the hub is down
    time.sleep(4)
    hub.start()
    hub.wait_ready("acc-run", timeout=30)
    wait_until(lambda: any(r["user"] == "acc-gone" and r["end"] for r in records(hub)), what="the gone server's record to close")

    after = {r["user"]: r for r in records(hub) if r["user"].startswith("acc-")}
    assert after["acc-run"]["record"] == opened["acc-run"]["record"] and not after["acc-run"]["end"]  # one record, still open
    gone = after["acc-gone"]
    # closed at the last time the hub saw it running, not at the restart: the downtime is not charged
    assert parse(gone["end"]) <= killed
    assert gone["end_reason"] == "reconcile: its container is gone"
    length = (parse(gone["end"]) - parse(gone["start"])).total_seconds()
    assert abs(float(gone["gpu_seconds"]) - 0.25 * length) <= 1

    hub.stop_server("acc-run")
    closed = next(r for r in records(hub) if r["user"] == "acc-run")
    length = (parse(closed["end"]) - parse(closed["start"])).total_seconds()
    assert parse(closed["start"]) < killed < parse(closed["end"])  # one record across the restart
    assert abs(float(closed["gpu_seconds"]) - length) <= 1 and closed["end_reason"] == "server stopped"
    totals = call(hub, OPS, "GET", "usage").json()["totals"]
    by_user = {t["user"]: t["gpu_seconds"] for t in totals if t["user"].startswith("acc-")}
    assert set(by_user) == {"acc-run", "acc-gone"}
    assert abs(by_user["acc-run"] - float(closed["gpu_seconds"])) <= 1  # the CSV rounds to whole seconds
    assert abs(by_user["acc-gone"] - float(gone["gpu_seconds"])) <= 1


def home_volume(container) -> str:
    return next(m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan")


def home_file(hub, volume: str, path: str) -> str:
    out = hub.docker.containers.run(USER_IMAGE, ["cat", f"/home/jovyan/{path}"], volumes={volume: {"bind": "/home/jovyan"}}, remove=True, network_mode="none")
    return out.decode()


def test_weekly_gpu_hours_refuse_a_start_and_stop_a_running_server_with_its_files(admin_hub):
    hub = admin_hub
    user = "hours"
    hub.create_user(user)
    r = call(hub, OPS, "PUT", f"quotas/user/{user}", {"gpu_hours_per_week": 0.005})  # 18 GPU-seconds
    assert r.status_code == 200, r.text
    request_server(hub, user, "gpu-1")
    hub.wait_ready(user)
    container = container_of(hub, user)
    volume = home_volume(container)
    assert container.exec_run(["sh", "-c", "echo kept > /home/jovyan/notes.txt"]).exit_code == 0
    # warned: the hub's notice, which the user's JupyterLab status bar shows through the server extension
    token = token_of(hub, user)
    notices_url = f"{hub.url}/hub/api/gpuhub/v1/notices/{user}"
    wait_until(lambda: requests.get(notices_url, headers={"Authorization": f"token {token}"}, timeout=10).json()["notices"], what="a notice")
    gpus = hub.session.get(f"{hub.user_server_url(user)}gpuhub/api/v1/gpus", timeout=30).json()
    assert "Weekly GPU-hours run out" in gpus["notices"][0]["message"], gpus
    # then stopped within a few check intervals
    seen = []
    def stopped():
        seen.extend(requests.get(f"{hub.url}/hub/api/gpuhub/v1/notices/{user}", headers={"Authorization": f"token {token}"}, timeout=10).json()["notices"])
        return not hub.api("GET", f"/users/{user}", expect=200).json()["servers"]
    wait_until(stopped, timeout=60, what="the server to be stopped")
    assert any("Weekly GPU-hours" in n["message"] for n in seen), seen
    assert f"gpuhub accounting: {user}: released allocation" in hub.log_path.read_text()
    assert home_file(hub, volume, "notes.txt") == "kept\n"
    # the next GPU start is refused at once with what remains; a CPU-only one still starts
    r = hub.api("POST", f"/users/{user}/server", {"profile": "gpu-1"})
    assert r.status_code == 403, r.text
    assert "Weekly GPU-hours used up" in r.json()["message"] and "0.00 remain" in r.json()["message"]
    # someone else cannot read this user's notices
    other = token_of(hub, "nosy")
    assert requests.get(f"{hub.url}/hub/api/gpuhub/v1/notices/{user}", headers={"Authorization": f"token {other}"}, timeout=10).status_code == 403


def test_force_free_and_taking_a_spawn_out_of_the_line(admin_hub):
    hub = admin_hub
    holders = hold_every_whole_gpu(hub, "line")
    request_server(hub, "waiter", "gpu-1")
    wait_until(lambda: call(hub, READER, "GET", "queue").json()["waiting"], what="the waiter in line")
    (entry,) = call(hub, READER, "GET", "queue").json()["waiting"]
    assert entry["holder"] == "waiter" and entry["profile"] == "gpu-1" and entry["position"] == 1
    assert call(hub, READER, "DELETE", f"queue/{entry['ticket']}").status_code == 403  # read-only
    assert call(hub, OPS, "DELETE", f"queue/{entry['ticket']}").status_code == 204
    wait_until(lambda: not hub.api("GET", "/users/waiter", expect=200).json()["servers"], what="the removed spawn to end")
    assert "took this start out of the line" in hub.log_path.read_text()
    # force-free by index: the holder's server stops, the device is free again
    devices = {d["index"]: d for d in call(hub, READER, "GET", "gpus").json()["devices"]}
    held = next(i for i, d in devices.items() if d["state"] == "held")
    victim = devices[held]["holders"][0]["user"]
    r = call(hub, OPS, "POST", f"gpus/{held}/free")
    assert r.status_code == 200 and r.json()["freed"][0]["user"] == victim
    wait_until(lambda: not hub.api("GET", f"/users/{victim}", expect=200).json()["servers"], what="the freed server to stop")
    assert {d["index"]: d["state"] for d in call(hub, READER, "GET", "gpus").json()["devices"]}[held] == "free"
    assert call(hub, OPS, "POST", "gpus/99/free").json()["field"] == "device"
    for u in holders:
        hub.api("DELETE", f"/users/{u}/server")


def gpuhub_cli(hub, *args, token=OPS):
    env = {**os.environ, "GPUHUB_URL": hub.url, "GPUHUB_TOKEN": token, "PYTHONPATH": str(REPO / "platform")}
    return subprocess.run([sys.executable, "-m", "gpuhub.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_cli_over_the_api(admin_hub):
    hub = admin_hub
    hub.api("POST", "/groups/cli-lab")
    r = gpuhub_cli(hub, "quota", "set", "--group", "cli-lab", "--max-gpus", "2", "--gpu-hours-per-week", "40", "--max-memory", "64G", "--profiles", "cpu-test,gpu-1")
    assert r.returncode == 0 and "max_gpus=2" in r.stdout, r.stderr
    shown = gpuhub_cli(hub, "quota", "show", "--group", "cli-lab").stdout
    assert "cli-lab" in shown and "64G" in shown and "cpu-test,gpu-1" in shown and "database" in shown
    bad = gpuhub_cli(hub, "quota", "set", "--group", "cli-lab", "--max-gpus", "-3")
    assert bad.returncode == 1 and "max_gpus" in bad.stderr and "Accepted: an integer from 0 to 1024" in bad.stderr
    assert next(r for r in rules(hub) if r["name"] == "cli-lab")["max_gpus"] == 2  # the bad set changed nothing
    assert gpuhub_cli(hub, "quota", "show", "--user", "admin").returncode == 0
    gpus = gpuhub_cli(hub, "gpus").stdout
    assert "SIMULATED" in gpus and "NVIDIA H100 80GB HBM3" in gpus and "3g.40gb" in gpus
    usage = gpuhub_cli(hub, "usage", "--since", "2026-01-01", "--records")
    assert usage.returncode == 0 and usage.stdout.startswith("record,allocation,user,groups")
    assert gpuhub_cli(hub, "quota", "unset", "--group", "cli-lab").returncode == 0
    assert gpuhub_cli(hub, "quota", "unset", "--group", "cli-lab").returncode == 1  # nothing left to remove
    assert gpuhub_cli(hub, "gpus", token="").returncode == 2
    assert gpuhub_cli(hub, "gpus", token=READER).returncode == 0
    denied = gpuhub_cli(hub, "free", "0", token=READER)
    assert denied.returncode == 1 and "403" in denied.stderr


def test_metrics_on_the_hub(admin_hub):
    hub = admin_hub
    request_server(hub, "metered", "gpu-mig")
    hub.wait_ready("metered")
    def scraped():
        text = requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {OPS}"}, timeout=10).text
        return text if 'gpuhub_allocations{mode="mig"} 1.0' in text else None
    wait_until(scraped, timeout=40, what="the metrics snapshot")
    text = scraped()
    assert 'gpuhub_devices{kind="gpu",model="NVIDIA H100 80GB HBM3",simulated="true"} 4.0' in text
    assert 'gpuhub_devices_by_state{kind="mig:3g.40gb",model="NVIDIA A100-SXM4-80GB",simulated="true",state="held"} 1.0' in text
    assert 'gpuhub_user_gpu_seconds_total{user="metered"}' in text
    assert requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {READER}"}, timeout=10).status_code == 403
    hub.api("DELETE", "/users/metered/server")
