"""The GPU wait lines on the real engine and a real hub process (simulated inventory of 4 whole GPUs
and 4 MIG slices): one order across kinds of request when a GPU is freed; the lines survive a graceful
hub restart (the waiters are started again, at their places, and a freed GPU goes to the first); and
the hub's log at start, at a refused start and at a stop has no tracebacks or deprecation notices."""

import re

import pytest

from tests.hubprocess import remove_prefixed
from tests.integration.test_admin import OPS, ROLES, call
from tests.integration.test_gpu_allocation import (
    first_progress_message, gpu, hold_every_whole_gpu, live_allocations, make_hub, request_server, wait_until,
)

PREFIX = "gpuhubtest-lines"


@pytest.fixture
def lines_hub(tmp_path):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path, prefix=PREFIX)
    hub.extra_config += ROLES
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
