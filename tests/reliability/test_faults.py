"""Faults injected into the real parts while users work: the Docker engine restarted during a burst of
spawns, the hub killed (-9) in the middle of allocations and with running servers, containers killed
or removed behind the hub's back, a server that never answers, and PostgreSQL stopped and started.

Every round seeds each user's home with a file first (a returning user) and, after the fault, waits
for the platform to settle, then requires (``audit``): 0 double-assigned GPUs, 0 leaked allocations,
0 orphan containers, every home file intact; and then that the next spawn works for every user whose
server the fault took. Each scenario runs ``GPUHUB_FAULT_ROUNDS`` rounds (1 in CI; more for the figures), with the fault
landing at a different moment each round; the figures go to build/reliability/faults.jsonl.
"""

from __future__ import annotations

import signal
import threading
import time
from functools import partial

import pytest
import requests

from tests.hubprocess import HubError
from tests.reliability.audit import audit, containers, record, restart_dockerd, seed_home, servers, settle
from tests.reliability.conftest import ROUNDS

EACH_ROUND = pytest.mark.parametrize("round_no", range(ROUNDS))
# when the fault lands after the burst of spawns was asked for, spread over the rounds: early
# (allocating, creating containers) to late (servers booting); each round checks that spawns were
# still in flight when it landed
DELAYS = (1.5, 0.5, 3.0, 1.0, 2.5)


def delay(round_no: int) -> float:
    return DELAYS[round_no % len(DELAYS)]


def ask(hub, user: str, profile: str) -> int:
    hub.create_user(user)
    return hub.api("POST", f"/users/{user}/server", {"profile": profile}).status_code


def start_ready(hub, plan: dict[str, str], timeout: float = 150) -> float:
    """Start every user's server with its profile; seconds until all are ready."""
    began = time.monotonic()
    for user, profile in plan.items():
        status = ask(hub, user, profile)
        assert status in (201, 202), f"{user}: spawn refused with {status}"
    for user in plan:
        hub.wait_ready(user, timeout=timeout)
    return time.monotonic() - began


def stop_all(hub, homes) -> None:
    for user in servers(hub):
        hub.api("DELETE", f"/users/{user}/server")
    settle(hub, homes)


def container_ids(hub, users) -> dict[str, str]:
    return {c["Labels"]["org.gpuhub.user"]: c["Id"] for c in containers(hub) if c["Labels"].get("org.gpuhub.user") in users}


def finish(hub, scenario, round_no, plan, homes, settled: float | None = None, **figures) -> None:
    """After the fault: settle (unless the test did: ``settled`` seconds), then the next spawn for
    everyone whose server is gone, then audit and stop all (a clean slate for the next round).
    Records the round's figures."""
    if settled is None:
        settled = settle(hub, homes)
    running = {u for u, s in servers(hub).items() if s.get("ready")}
    again = {u: p for u, p in plan.items() if u not in running}
    restarted = start_ready(hub, again)
    assert not audit(hub, homes)
    stop_all(hub, homes)
    record(
        scenario, round_no, users=len(plan), survived=len(running & set(plan)), restarted=len(again),
        settle_s=round(settled, 1), next_spawns_s=round(restarted, 1), problems=0, **figures,
    )


def burst_beside_running_servers(hub, tag: str) -> tuple[dict, dict, dict, list[threading.Thread]]:
    """Every home seeded; two servers running (one GPU, one CPU); three more spawns asked for at once
    (two GPU, one CPU), each from its own thread, as people pressing Start together (JupyterHub
    answers a spawn request when the server is up). Returns (running users, every user, homes, the
    requests' threads) while those spawns are in flight."""
    steady = {f"{tag}a": "gpu-1", f"{tag}b": "cpu-test"}
    plan = {**steady, f"{tag}c": "gpu-1", f"{tag}d": "gpu-1", f"{tag}e": "cpu-test"}
    homes = {u: seed_home(hub, u) for u in plan}
    start_ready(hub, steady)
    burst = {u: p for u, p in plan.items() if u not in steady}
    for user in burst:
        hub.create_user(user)

    def press_start(user, profile):
        try:
            requests.post(f"{hub.url}/hub/api/users/{user}/server", json={"profile": profile}, headers=hub.session.headers, timeout=60)
        except requests.RequestException:
            pass  # the fault may cut the request: what counts is what the platform does after it

    threads = [threading.Thread(target=press_start, args=item, daemon=True) for item in burst.items()]
    for t in threads:
        t.start()
    return steady, plan, homes, threads


def in_flight(hub, users) -> int:
    """How many of ``users`` have a spawn pending now (the fault must land on some)."""
    return sum(1 for u, s in servers(hub).items() if u in users and s.get("pending") == "spawn")


@EACH_ROUND
def test_dockerd_restarted_during_a_burst_of_spawns(rel_hub, round_no):
    hub = rel_hub
    steady, plan, homes, requests_made = burst_beside_running_servers(hub, f"dk{round_no}")
    time.sleep(delay(round_no))
    pending = in_flight(hub, plan)
    assert pending, "no spawn was in flight when the fault landed"
    engine_back = restart_dockerd()
    for t in requests_made:
        t.join(60)
    finish(hub, "dockerd restarted during a burst of spawns", round_no, plan, homes,
           fault_at_s=delay(round_no), in_flight=pending, engine_back_s=round(engine_back, 1))


@EACH_ROUND
def test_hub_kill_9_during_allocations_and_with_running_servers(rel_hub, round_no):
    hub = rel_hub
    steady, plan, homes, requests_made = burst_beside_running_servers(hub, f"k9{round_no}")
    before = container_ids(hub, steady)
    time.sleep(delay(round_no))
    pending = in_flight(hub, plan)
    assert pending, "no spawn was in flight when the fault landed"
    hub.process.send_signal(signal.SIGKILL)
    hub.process.wait()
    hub.stop()  # the proxy outlives a killed hub
    for t in requests_made:
        t.join(60)
    began = time.monotonic()
    hub.start()
    hub_back = time.monotonic() - began
    for user in steady:  # servers that ran before the kill run on, in the same containers
        hub.wait_ready(user, timeout=60)
    assert container_ids(hub, steady) == before
    finish(hub, "hub kill -9 during allocations, with running servers", round_no, plan, homes,
           fault_at_s=delay(round_no), in_flight=pending, hub_back_s=round(hub_back, 1))


@EACH_ROUND
def test_containers_killed_or_removed_outside_the_hub(rel_hub, round_no):
    hub = rel_hub
    plan = {f"ct{round_no}a": "gpu-1", f"ct{round_no}b": "cpu-test", f"ct{round_no}c": "gpu-1"}
    homes = {u: seed_home(hub, u) for u in plan}
    start_ready(hub, plan)
    ids = container_ids(hub, plan)
    users = list(plan)
    how = {users[0]: "kill", users[1]: "remove", users[2]: "stop"}
    if round_no % 2:
        how = {users[0]: "remove", users[1]: "kill", users[2]: "kill"}
    for user, action in how.items():
        c = hub.docker.containers.get(ids[user])
        {"kill": c.kill, "remove": partial(c.remove, force=True), "stop": partial(c.stop, timeout=2)}[action]()
    settled = settle(hub, homes)
    assert not {u for u, s in servers(hub).items() if u in plan}, "the hub still shows a server whose container is gone"
    finish(hub, "containers killed or removed outside the hub", round_no, plan, homes, settled,
           actions=",".join(sorted(how.values())))


@EACH_ROUND
def test_a_spawn_that_never_becomes_ready(rel_hub, round_no):
    hub = rel_hub
    user, other = f"nr{round_no}a", f"nr{round_no}b"
    homes = {user: seed_home(hub, user), other: seed_home(hub, other)}
    log_from = hub.log_path.stat().st_size
    began = time.monotonic()
    assert ask(hub, user, "never-ready") in (201, 202)
    start_ready(hub, {other: "gpu-1"})  # others start meanwhile
    with pytest.raises(HubError, match="spawn failed|is gone"):
        hub.wait_ready(user, timeout=120)
    gave_up = time.monotonic() - began
    with open(hub.log_path, errors="replace") as log:
        log.seek(log_from)
        given_up = [line for line in log if f"did not answer within {hub.start_timeout} seconds" in line and user in line]
    assert given_up, f"the hub did not log giving up on {user}'s server, saying why"
    finish(hub, "a spawn that never becomes ready", round_no, {user: "gpu-1", other: "gpu-1"}, homes,
           gave_up_s=round(gave_up, 1), start_timeout_s=hub.start_timeout)


@EACH_ROUND
def test_postgresql_stopped_and_started(rel_hub, round_no):
    hub = rel_hub
    steady = {f"pg{round_no}a": "gpu-1", f"pg{round_no}b": "cpu-test"}
    during = f"pg{round_no}c"
    plan = {**steady, during: "gpu-1"}
    homes = {u: seed_home(hub, u) for u in plan}
    hub.create_user(during)
    start_ready(hub, steady)
    before = container_ids(hub, steady)
    hub.pg.halt()
    try:
        outage = {}
        outage["spawn"] = hub.api("POST", f"/users/{during}/server", {"profile": "gpu-1"}).status_code
        outage["list_users"] = hub.api("GET", "/users").status_code
        time.sleep(6)  # three of the hub's polls of the running servers
    finally:
        hub.pg.resume()
    assert all(status < 500 for status in outage.values()), outage  # refused, not crashed
    for user in steady:  # the running servers were not stopped because their database was away
        hub.wait_ready(user, timeout=60)
    assert container_ids(hub, steady) == before
    finish(hub, "PostgreSQL stopped and started", round_no, plan, homes,
           outage_spawn_status=outage["spawn"], outage_list_status=outage["list_users"])
