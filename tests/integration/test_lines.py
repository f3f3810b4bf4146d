"""The GPU wait lines on the real engine and a real hub process (simulated inventory of 4 whole GPUs
and 4 MIG slices): one order across kinds of request when a GPU is freed; the lines survive a graceful
hub restart (the waiters are started again, at their places, and a freed GPU goes to the first); the
hub's log at start, at a refused start and at a stop has no tracebacks or deprecation notices; with
``[fairness] policy = "fair-share"`` a freed GPU goes to whoever used fewer GPU-hours lately; a
waiter's estimate from the servers' age limit, against the wait it had (printed)."""

import re
import time

import pytest

from tests.hubprocess import remove_prefixed, token_of
from tests.integration.test_admin import OPS, READER, ROLES, call
from tests.integration.test_gpu_allocation import (
    first_progress_message, gpu, hold_every_whole_gpu, live_allocations, make_hub, request_server, wait_until,
)

PREFIX = "gpuhubtest-lines"


@pytest.fixture
def lines_hub(tmp_path, request):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path, prefix=PREFIX)
    hub.extra_config += ROLES
    hub.more_settings += getattr(request, "param", "")
    hub.start()
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def pending(hub, user) -> bool:
    servers = hub.api("GET", f"/users/{user}", expect=200).json()["servers"]
    return servers.get("", {}).get("pending") == "spawn"


def holders(hub) -> set[str]:
    return {user for user, _ in live_allocations(hub).values()}


def test_a_freed_gpu_goes_to_the_earliest_request_across_kinds(lines_hub):
    """The issue's case: a whole GPU force-freed went to the shared line's waiters while the exclusive
    request, which asked first, kept waiting."""
    hub = lines_hub
    hold_every_whole_gpu(hub, "h")
    request_server(hub, "first", "gpu-1")
    assert first_progress_message(hub, "first") == "waiting for a GPU (exclusive×1): 1st of 1 in line"
    for i in range(4):
        request_server(hub, f"later{i}", "gpu-shared")
    wait_until(lambda: len(call(hub, OPS, "GET", "queue").json()["waiting"]) == 5, what="five in line")
    held = next(index for index, (user, _) in enumerate(sorted(live_allocations(hub).values())) if user == "h0")
    r = call(hub, OPS, "POST", f"gpus/{gpu(held)}/free")
    assert r.status_code == 200, r.text
    hub.wait_ready("first", timeout=120)
    assert not holders(hub) & {f"later{i}" for i in range(4)}  # the shared requests still wait
    assert [row["holder"] for row in call(hub, OPS, "GET", "queue").json()["waiting"]] == [f"later{i}" for i in range(4)]


def test_the_lines_survive_a_graceful_restart_and_the_log_stays_quiet(lines_hub):
    hub = lines_hub
    hold_every_whole_gpu(hub, "r")
    for user in ("w1", "w2"):
        request_server(hub, user, "gpu-1")
        wait_until(lambda user=user: user in [w["holder"] for w in call(hub, OPS, "GET", "queue").json()["waiting"]], what=f"{user} in line")
    hub.create_user("w3")
    assert hub.api("POST", "/users/w3/server", {"profile": "nope"}).status_code == 400

    hub.stop()  # SIGTERM, as `docker-compose restart hub` sends
    hub.start()
    wait_until(lambda: pending(hub, "w1") and pending(hub, "w2"), timeout=60, what="both starts to be served again")
    wait_until(lambda: len(call(hub, OPS, "GET", "queue").json()["waiting"]) == 2, what="both back in line")
    waiting = call(hub, OPS, "GET", "queue").json()["waiting"]
    assert [(w["holder"], w["position"]) for w in waiting] == [("w1", 1), ("w2", 2)]
    assert first_progress_message(hub, "w1") == (
        "waiting for a GPU (exclusive×1): 1st of 2 in line (your place was kept across a hub restart)"
    )
    hub.stop_server("r0")  # a GPU frees: the first in line gets it
    hub.wait_ready("w1", timeout=120)
    assert pending(hub, "w2") and "w2" not in holders(hub)

    log = hub.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert not re.search(r"deprecat", log, re.IGNORECASE), [line for line in log.splitlines() if "eprecat" in line]
    refused = [line for line in log.splitlines() if "w3" in line and ("refused" in line or "[E " in line)]
    assert len(refused) == 1 and "gpuhub w3: start refused (400 profile): No such profile: 'nope'" in refused[0], refused
    assert refused[0].startswith("[I ")


@pytest.mark.parametrize("lines_hub", ['\n[fairness]\npolicy = "fair-share"\nhalf_life_hours = 1\n'], indirect=True, ids=["fair-share"])
def test_fair_share_gives_a_freed_gpu_to_the_lighter_user_who_asked_later(lines_hub):
    hub = lines_hub
    request_server(hub, "heavy", "gpu-1")  # heavy used a GPU a little while ago
    hub.wait_ready("heavy")
    hub.stop_server("heavy")
    hold_every_whole_gpu(hub, "f")
    request_server(hub, "heavy", "gpu-1")  # asks first...
    wait_until(lambda: [w["holder"] for w in call(hub, OPS, "GET", "queue").json()["waiting"]] == ["heavy"], what="heavy in line")
    request_server(hub, "light", "gpu-1")  # ...light, who used nothing, asks after
    wait_until(lambda: len(call(hub, OPS, "GET", "queue").json()["waiting"]) == 2, what="both in line")
    queue = call(hub, OPS, "GET", "queue").json()
    assert queue["policy"] == "fair-share"
    assert [(w["holder"], w["position"]) for w in queue["waiting"]] == [("light", 1), ("heavy", 2)]
    reasons = {w["holder"]: w["order"] for w in queue["waiting"]}
    assert reasons["light"] == "priority 0; 0.0 recent GPU-hours" and reasons["heavy"].startswith("priority 0; 0.0")  # seconds of use
    hub.stop_server("f0")  # a GPU frees: the lighter user gets it
    hub.wait_ready("light", timeout=120)
    assert pending(hub, "heavy") and "heavy" not in holders(hub)


MAX_AGE, CULL_EVERY = 100, 10


@pytest.mark.parametrize("lines_hub", [f"\n[culling]\ntimeout = 3600\nevery = {CULL_EVERY}\nmax_age = {MAX_AGE}\n"], indirect=True, ids=["max-age"])
def test_a_waiter_sees_when_a_gpu_likely_frees_and_it_does(lines_hub):
    """Every GPU held by servers the culler stops at their maximum age: the waiter's estimate rests on
    it, only the waiter and admins may read it, and the GPU comes within the culler's period of it."""
    hub = lines_hub
    hold_every_whole_gpu(hub, "m")
    request_server(hub, "waiter", "gpu-1")
    wait_until(lambda: call(hub, READER, "GET", "users/waiter/wait").json()["waiting"], what="the waiter's wait")
    asked = time.monotonic()
    (wait,) = call(hub, READER, "GET", "users/waiter/wait").json()["waiting"]
    assert (wait["line"], wait["place"], wait["in_line"], wait["server"]) == ("exclusive×1", 1, 1, "")
    assert wait["estimate_basis"] == "servers are stopped at their maximum age"
    estimate = wait["estimate_seconds"]
    assert 0 < estimate <= MAX_AGE
    own = call(hub, token_of(hub, "waiter"), "GET", "users/waiter/wait")
    other = call(hub, token_of(hub, "m0"), "GET", "users/waiter/wait")
    culler_like = call(hub, hub.token, "GET", "users/waiter/wait")  # read:servers for everyone, no gpuhub scope
    assert own.status_code == 200 and own.json()["waiting"][0]["place"] == 1
    assert other.status_code == 403 and "Only waiter themselves" in other.json()["message"]
    assert culler_like.status_code == 403

    hub.wait_ready("waiter", timeout=MAX_AGE + 120)
    got = time.monotonic() - asked
    print(f"\nestimate {estimate} s, the GPU came after {got:.0f} s (culler every {CULL_EVERY} s)")
    assert estimate - 5 <= got <= estimate + CULL_EVERY + 60, (estimate, got)  # + the holder's own start (the culler counts from it), the culler's period, a stop and a start
