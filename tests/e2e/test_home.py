"""The person's home page in Chromium (issue 19): under JupyterHub's start/stop buttons, their running
server with its (SIMULATED) GPU's model and mode, their quota as meters with where each limit comes
from, and their GPU-hours of the last weeks; the overview API refuses another person's token."""

import re
import time

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_admin_page import hub_api, stop_own_server
from tests.e2e.test_browser import log_in


def test_the_home_page_shows_my_server_its_gpu_my_quota_and_my_weeks(page, platform):
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    stop_own_server(page, platform)
    hub_api(page, platform, "POST", "/users/admin/server", data={"profile": "gpu-1"})
    deadline = time.monotonic() + 120
    while not (hub_api(page, platform, "GET", "/users/admin").json()["servers"].get("") or {}).get("ready"):
        assert time.monotonic() < deadline, "the admin's GPU server did not start"
        time.sleep(1)

    page.goto(f"{platform.url}/hub/home")
    row = page.locator("#gpuhub-servers tbody tr:not(.gpuhub-empty)")
    row.first.wait_for(timeout=30_000)
    text = row.first.inner_text()
    assert "(default)" in text and "gpu-1" in text and "NVIDIA H100 80GB HBM3 · exclusive" in text, text
    meters = page.locator("#gpuhub-meters .gpuhub-meter")
    assert meters.count() == 3
    gpus = meters.nth(0).inner_text()
    assert "GPUs held" in gpus and re.search(r"1 (of \d+ )?GPU\(s\)", gpus) and "Limit from:" in gpus, gpus
    assert "GPU-hours" in meters.nth(2).inner_text()
    assert page.locator("#gpuhub-weeks .gpuhub-week").count() == 8
    assert page.inner_text("#gpuhub-simulated") == "(SIMULATED GPUs)"
    assert "No class window ahead for you." in page.inner_text("#gpuhub-classes")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "user-home.png"), full_page=True)

    # the admin's own session reads it; another person's token may not
    overview = page.request.get(f"{platform.url}/hub/api/gpuhub/v1/users/admin/overview")
    assert overview.status == 200 and overview.json()["servers"][0]["gpus"][0]["mode"] == "exclusive"
    hub_api(page, platform, "POST", "/users/someone-else")
    token = hub_api(page, platform, "POST", "/users/someone-else/tokens", data={"expires_in": 600}).json()["token"]
    refused = page.request.get(f"{platform.url}/hub/api/gpuhub/v1/users/admin/overview",
                               headers={"Authorization": f"token {token}"})
    assert refused.status == 403 and "Only admin themselves" in refused.json()["message"]
    stop_own_server(page, platform)
