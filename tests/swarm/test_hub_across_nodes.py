"""What a hub on one host does, on several Swarm nodes (``tests/swarm/swarmhub.py``; fixture
``swarm_hub``, after ``test_hub.py``: every server stopped): a classroom session's GPU reserved on
a named node (prewarmed and stopped by the agent) and the quota counted on another node, the GPU-idle
reclaim reading each node's own device activity through its reporter, a person in Chromium (the
form, JupyterLab's GPU item, the admin page's Nodes tab), and the manager's engine restarted with
servers on two nodes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import time
from datetime import timedelta

import pytest
import requests

from gpuhub.agent.activity import HubActivity
from gpuhub.agent.core import active_users
from gpuhub.agent.hubapi import HubApi
from gpuhub.agent.reclaim import Reclaimer
from gpuhub.config.schema import load_settings
from gpuhub.contract import iso, utcnow
from tests.e2e.conftest import ARTIFACTS, jp_asyncio_loop, jp_server_cleanup, launch_browser, open_page  # noqa: F401 (fixtures)
from tests.hubprocess import REPO, answers_within
from tests.swarm.swarmhub import UP, gpu_uuid, live_allocations, server_gone, wait_netguards_told, wait_nodes, write_activity


def env_of(info: dict) -> dict:
    return dict(e.split("=", 1) for e in info["Config"]["Env"])


def test_a_sessions_gpu_reserved_on_a_named_node_goes_to_its_roster_only_and_quotas_count_every_node(swarm_hub):
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    assert live_allocations(swarm_hub) == []
    now = utcnow()
    window = {"start": iso(now - timedelta(minutes=5)), "end": iso(now + timedelta(hours=2))}
    body = {"title": "GPU lab", "profile": "gpu-1", "windows": [window], "devices": ["worker2/0"]}
    r = swarm_hub.gpuhub("PUT", "/sessions/gpulab", json=body, ok=(200, 201))
    assert r.json()["devices"] == [gpu_uuid(2)]
    bad = swarm_hub.gpuhub("PUT", "/sessions/gpulab", json={**body, "devices": ["worker9/0"]}, ok=(400,)).json()
    assert bad["field"] == "devices" and "worker9/0" in bad["message"]
    r = requests.post(f"{swarm_hub.url}/hub/api/gpuhub/v1/sessions/gpulab/roster", data=b"sam\n", timeout=60,
                      headers={"Authorization": f"token {swarm_hub.token}", "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    # worker2's single GPU is the best fit for one GPU: reserved, it goes to worker1 for someone else
    swarm_hub.start("olive", "gpu-1")
    swarm_hub.wait_ready("olive")
    assert swarm_hub.container_of("olive")[0] == "worker1"
    # the quota counts her GPU on worker1: a second server asking 3 more is above max_gpus = 3
    r = swarm_hub.api("POST", "/users/olive/servers/more", json={"profile": "gpu-3"}, ok=(403,))
    assert r.json()["message"].startswith("GPU quota reached: max_gpus = 3") and "You hold 1" in r.json()["message"]
    # the instructor's prewarm: the agent starts the roster's servers, on the reserved GPU's node
    swarm_hub.gpuhub("POST", "/sessions/gpulab/prewarm", ok=(200, 202, 204))
    deadline = time.monotonic() + 120
    while not swarm_hub.api("GET", "/users/sam").json()["servers"] and time.monotonic() < deadline:
        time.sleep(1)
    swarm_hub.wait_ready("sam")
    node, info = swarm_hub.container_of("sam")
    assert node == "worker2" and env_of(info)["NVIDIA_VISIBLE_DEVICES"] == gpu_uuid(2)
    assert info["Config"]["Labels"]["org.gpuhub.session"] == "gpulab"
    # the session's stop: the agent stops the roster's servers (files kept)
    swarm_hub.gpuhub("POST", "/sessions/gpulab/stop", ok=(200, 202, 204))
    server_gone(swarm_hub, "sam", timeout=120)
    swarm_hub.stop("olive")
    swarm_hub.gpuhub("DELETE", "/sessions/gpulab", ok=(200, 204))
    assert live_allocations(swarm_hub) == []


def wait_activity(hub, uuid: str, utilisation: int, timeout: float = 60) -> dict:
    """The hub's merged reading (``GET /activity``) once it says ``uuid`` is at ``utilisation``."""
    deadline = time.monotonic() + timeout
    reading = {}
    while time.monotonic() < deadline:
        reading = hub.gpuhub("GET", "/activity").json()
        if reading["devices"].get(uuid, {}).get("utilisation") == utilisation:
            return reading
        time.sleep(1)
    raise AssertionError(f"the hub's reading of {uuid} did not become {utilisation} within {timeout} s: {reading}\n{hub.logs()}")


async def _reclaim_round(hub, reclaimer: Reclaimer, now):
    api = HubApi(f"{hub.url}/hub/api", hub.token)
    reclaimer.api, reclaimer.read_activity = api, HubActivity(api).read  # a client per event loop
    return await reclaimer.round(now, await active_users(api))


def test_an_idle_gpu_on_a_worker_is_reclaimed_by_its_own_nodes_reading(swarm_hub):
    """The agent's reclaim, run here with its clock moved (as the hub's agent runs it, on its API):
    worker1's reporter reads worker1's activity, the hub merges the nodes' readings."""
    swarm_hub.start("ivy", "gpu-2")
    swarm_hub.wait_ready("ivy")
    node, info = swarm_hub.container_of("ivy")
    assert node == "worker1"
    write_activity(swarm_hub.inventories, "worker1", {0: 0, 1: 0})
    reading = wait_activity(swarm_hub, gpu_uuid(0), 0)
    assert reading["simulated"] and "worker1" in reading["source"] and reading["devices"][gpu_uuid(2)]["utilisation"] == 100
    settings = load_settings(swarm_hub.env["GPUHUB_SETTINGS_FILE"])
    reclaimer = Reclaimer(None, settings.reclaim, None, logging.getLogger("test"))
    now = utcnow()
    assert asyncio.run(_reclaim_round(swarm_hub, reclaimer, now))["idle"] == ["ivy:(default)"]
    # one of its two GPUs busy on worker1: not reclaimed, whatever the clock says
    write_activity(swarm_hub.inventories, "worker1", {0: 0, 1: 85})
    wait_activity(swarm_hub, gpu_uuid(1), 85)
    assert asyncio.run(_reclaim_round(swarm_hub, reclaimer, now + timedelta(minutes=30)))["busy"] == ["ivy:(default)"]
    write_activity(swarm_hub.inventories, "worker1", {0: 0, 1: 0})
    wait_activity(swarm_hub, gpu_uuid(1), 0)
    done = asyncio.run(_reclaim_round(swarm_hub, reclaimer, now + timedelta(minutes=91)))
    assert done["stopped"] == ["ivy:(default)"], done
    deadline = time.monotonic() + 120
    while swarm_hub.api("GET", "/users/ivy").json()["servers"] and time.monotonic() < deadline:
        time.sleep(1)
    assert not swarm_hub.api("GET", "/users/ivy").json()["servers"]
    assert [a for a in live_allocations(swarm_hub) if a[1] == "ivy"] == []
    volumes = swarm_hub.cluster.node("worker1").docker("volume", "ls", "-q").stdout.split()
    assert any("ivy" in v for v in volumes), volumes  # the files stay
    write_activity(swarm_hub.inventories, "worker1", {0: 100, 1: 100})


@pytest.fixture
def page(swarm_hub, request):
    """A Chromium page on the Swarm hub; its browser closed after the test (the e2e tier's own one
    starts later in the same session, and Playwright's sync API runs one at a time)."""
    for browser in launch_browser():
        yield from open_page(browser, request, swarm_hub.logs)


def test_in_chromium_the_same_form_jupyterlab_and_a_nodes_tab(page, swarm_hub):
    """A person in Chromium on the Swarm hub: the spawn form counts every node's GPUs, a 1-GPU server
    lands on a worker with the lab extension's GPU item, and the GPU admin page's Nodes tab lists the
    nodes with what they hold."""
    page.goto(f"{swarm_hub.url}/hub/login")
    page.fill("#username_input", "admin")
    page.fill("#password_input", swarm_hub.env["GPUHUB_ADMIN_PASSWORD"])
    page.click("#login_submit")
    page.wait_for_selector("input[name=profile]", timeout=60_000)
    card = page.locator("label[for=gpuhub-profile-gpu-1] .gpuhub-profile-capacity")
    assert card.inner_text() == "3 of 3 NVIDIA H100 80GB HBM3 free"
    assert page.locator(".gpuhub-gpu-source").inner_text().startswith("GPU figures: SIMULATED")
    page.click("label[for=gpuhub-profile-gpu-1]")
    page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=240_000)
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    node, info = swarm_hub.container_of("admin")
    assert node == "worker2"  # the best fit for one GPU: the node it leaves with none free
    uuid = env_of(info)["NVIDIA_VISIBLE_DEVICES"]
    status = page.wait_for_selector(".gpuhub-GpuStatus[data-gpuhub-state=unavailable]", timeout=60_000)
    assert status.inner_text() == "GPU n/a"  # env-only exposure, no NVML in CI: said so, not guessed
    gpus = requests.get(f"{swarm_hub.url}/user/admin/gpuhub/api/v1/gpus", headers={"Authorization": f"token {swarm_hub.token}"}, timeout=30).json()
    assert gpus["assigned"] == [uuid] and gpus["simulated"] is True
    page.goto(f"{swarm_hub.url}/hub/home")
    page.click("a.nav-link:text-is('GPU admin')")
    page.click("button[data-tab=nodes]")
    page.wait_for_selector("#nodes-table tbody tr[data-node=worker1]")
    rows = {r.get_attribute("data-node"): r.inner_text() for r in page.query_selector_all("#nodes-table tbody tr")}
    assert set(rows) == {"manager", "worker1", "worker2"}
    # free / held / total, the inventory's source labelled SIMULATED
    assert "0 / 1 / 1" in rows["worker2"] and "2 / 0 / 2" in rows["worker1"] and "0 / 0 / 0" in rows["manager"]
    assert "(SIMULATED)" in rows["worker2"] and "yes" in rows["worker2"]
    assert page.locator("#homes-table tbody tr", has_text="admin").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "swarm-nodes-tab.png"))
    swarm_hub.stop("admin")


def test_the_managers_engine_restarted_finds_the_same_assignments_on_both_workers(swarm_hub):
    manager = swarm_hub.cluster.manager
    swarm_hub.start("mike", "gpu-1")
    swarm_hub.start("nina", "gpu-2")
    for user in ("mike", "nina"):
        swarm_hub.wait_ready(user)
    assert {swarm_hub.container_of(u)[0] for u in ("mike", "nina")} == {"worker1", "worker2"}
    before = live_allocations(swarm_hub)
    assert len(before) == 3
    manager.restart_engine()
    # the hub's container comes back by its restart policy (unless-stopped); the workers' tasks ran on
    if not answers_within(f"{swarm_hub.url}/hub/health", 180, interval=1):
        subprocess.run([*swarm_hub.compose, *UP], cwd=REPO, env=swarm_hub.env, timeout=300)
        raise AssertionError(f"the hub did not come back after the manager's engine restarted\n{swarm_hub.logs()}")
    wait_nodes(swarm_hub, lambda ns: len(ns) == 3 and all(n["takes_servers"] for n in ns))
    assert live_allocations(swarm_hub) == before
    # the proxy reaches the servers by their service names on the overlay: the manager's engine
    # learns the workers' tasks again from the Swarm's gossip after its restart (recorded below)
    back = time.monotonic()
    waited = max(swarm_hub.wait_server_answers(user, since=back) for user in ("mike", "nina"))
    swarm_hub.cluster.notes.append(f"manager engine restart: both servers answered through the proxy {waited:.0f} s after the nodes reported again")
    # the workers' gpuhub-netguard told the hub's address after the restart (a new one, or the same), so
    # the answers above came through rules naming it (network isolation; tests/swarm/test_network.py)
    wait_netguards_told(swarm_hub)
    for user in ("mike", "nina"):
        swarm_hub.stop(user)
    assert live_allocations(swarm_hub) == []
