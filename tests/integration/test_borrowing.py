"""Borrowing beyond the GPU quota on the real engine and a real hub process (simulated inventory of 4
whole GPUs): a user whose quota allows no GPU borrows a free one (marked in the form, the admin's
GPU list, the home page's API and the server's own GPU endpoint); when someone within quota waits,
the borrower is warned (a notice with the stop time, the waiter's estimate counting it), stopped after
the grace period through JupyterHub's stop, its files kept and a notice saying why, and the waiter gets
the GPU."""

import re
import time

import pytest
import requests

from gpuhub.contract import parse_time
from tests.hubprocess import container_of, login, remove_prefixed, token_of
from tests.integration.test_admin import READER, ROLES, call, home_file, home_volume
from tests.integration.test_gpu_allocation import live_allocations, make_hub, request_server, wait_until

PREFIX = "gpuhubtest-borrow"
GRACE = 20
SETTINGS = f"""
[[quotas]]
user = "bob"
max_gpus = 0

[borrowing]
profiles = ["gpu-1"]
grace_period = {GRACE}
"""


@pytest.fixture
def borrow_hub(tmp_path):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path, prefix=PREFIX)
    hub.extra_config += ROLES
    hub.more_settings += SETTINGS
    hub.start()
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def notices(hub, user, token):
    r = requests.get(f"{hub.url}/hub/api/gpuhub/v1/notices/{user}", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["notices"]


def test_a_borrower_is_taken_back_for_a_waiter_within_quota_files_kept(borrow_hub):
    hub = borrow_hub
    for user in ("h0", "h1", "h2"):
        request_server(hub, user, "gpu-1")
    for user in ("h0", "h1", "h2"):
        hub.wait_ready(user)
    hub.create_user("bob")
    bob = token_of(hub, "bob")
    admin, r = login(hub, "admin", hub.admin_password)
    assert r.status_code == 302, r.text
    form = admin.get(f"{hub.url}/hub/spawn/bob", timeout=30)  # bob's form, as an admin sees it
    assert form.status_code == 200 and "borrowed: beyond your GPU quota" in form.text, re.findall(r'capacity">[^<]*', form.text)

    request_server(hub, "bob", "gpu-1")  # max_gpus = 0, one GPU free: borrowed
    hub.wait_ready("bob")
    container = container_of(hub, "bob")
    assert container.exec_run(["sh", "-c", "echo kept > /home/jovyan/notes.txt"]).exit_code == 0
    volume = home_volume(container)
    gpus = hub.session.get(f"{hub.url}/user/bob/gpuhub/api/v1/gpus", timeout=30).json()
    assert gpus["borrowed"] is True, gpus
    rows = call(hub, READER, "GET", "gpus").json()["devices"]
    assert [h["borrowed"] for row in rows for h in row["holders"] if h["user"] == "bob"] == [True]
    (server,) = call(hub, bob, "GET", "users/bob/overview").json()["servers"]
    assert server["borrowed"] is True and server["taken_back_at"] is None

    # someone within quota asks while every GPU is held
    hub.create_user("carol")
    r = hub.api("POST", "/users/carol/server", {"profile": "gpu-1"})
    assert r.status_code in (201, 202), r.text  # carol is within quota (no limit): she waits
    wait_until(lambda: call(hub, READER, "GET", "queue").json()["waiting"], what="carol in line")
    asked = time.monotonic()
    wait_until(lambda: notices(hub, "bob", bob), timeout=30, what="bob warned")
    (warned,) = notices(hub, "bob", bob)
    assert warned["source"] == "borrowing" and warned["level"] == "warn"
    assert "runs on a borrowed GPU" in warned["message"] and "it will be stopped at" in warned["message"]
    (server,) = call(hub, bob, "GET", "users/bob/overview").json()["servers"]
    stop_at = parse_time(server["taken_back_at"])
    wait = call(hub, READER, "GET", "users/carol/wait").json()["waiting"]
    assert wait and wait[0]["estimate_basis"] == "a borrowed GPU is taken back" and 0 < wait[0]["estimate_seconds"] <= GRACE, wait

    hub.wait_ready("carol", timeout=GRACE + 120)
    took = time.monotonic() - asked
    rows = call(hub, READER, "GET", "gpus").json()["devices"]
    (carol_since,) = [parse_time(h["since"]) for row in rows for h in row["holders"] if h["user"] == "carol"]
    assert carol_since >= stop_at, (carol_since, stop_at)  # bob had his whole grace period (by the hub's clock)
    assert not hub.api("GET", "/users/bob", expect=200).json()["servers"]  # stopped through JupyterHub
    holders = {user for user, _ in live_allocations(hub).values()}
    assert "bob" not in holders and "carol" in holders
    (stopped,) = notices(hub, "bob", bob)
    assert stopped["level"] == "stop" and "was stopped at" in stopped["message"] and "files are kept" in stopped["message"]
    assert home_file(hub, volume, "notes.txt") == "kept\n"
    log = hub.log_path.read_text()
    assert "gpuhub borrowing bob:(default)" in log and "grace period over: stopping the server" in log
    print(f"\nborrowed GPU taken back: carol placed {took:.0f} s after she asked (grace {GRACE} s)")
