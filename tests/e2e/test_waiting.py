"""A person in Chromium meets gpuhub's refusals and the GPU line (runs last in the tier: it restarts
the composed hub):

- a profile whose image the host lacks is shown disabled, with the reason and how to get it; the
  form's start of it anyway, and an image outside the allowed list, are refused on the form page with
  the same message and status as the REST API, and nothing starts;
- waiting in line for a GPU, "Leave the line" on the spawn page cancels the start and goes home, the
  line empty again; the wait endpoint says the place while waiting;
- waiting while a borrowed GPU is being taken back, the spawn page says when it likely frees and why;
  leaving the line withdraws the borrower's warning (the borrower keeps the GPU);
- waiting in line for a GPU, the hub restarts (``docker-compose restart hub``): the spawn page says
  the hub was lost, then shows the same place in line "kept across a hub restart", and opens
  JupyterLab when a GPU frees."""

import re
import subprocess
import time

from tests.e2e.conftest import ARTIFACTS, MISSING_IMAGE, REPO
from tests.e2e.test_admin_page import hub_api, stop_own_server
from tests.e2e.test_browser import log_in


def form_post(page, platform, fields: dict):
    """The spawn form posted with ``fields`` (as a person with the browser's devtools could)."""
    token = page.evaluate("window.jhdata.xsrf_token")
    return page.request.post(f"{platform.url}/hub/spawn", form={"_xsrf": token, **fields}, max_redirects=0)


def server_of(page, platform, user):
    return hub_api(page, platform, "GET", f"/users/{user}").json()["servers"].get("")


def test_missing_image_and_disallowed_image_are_refused_on_the_form(page, platform):
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    stop_own_server(page, platform)
    page.goto(f"{platform.url}/hub/spawn")
    page.wait_for_selector("input[name=profile]")
    assert page.is_disabled("#gpuhub-profile-gpu-cuda")
    reason = page.locator("label[for=gpuhub-profile-gpu-cuda] .gpuhub-profile-capacity").inner_text()
    assert f"The image '{MISSING_IMAGE}' of profile 'gpu-cuda' is not on this host" in reason
    assert "bash images/build.sh cuda 2.7-cuda12.6" in reason

    # started anyway: 409 with the same reason, on the form page, before anything was allocated
    r = form_post(page, platform, {"profile": "gpu-cuda"})
    assert r.status == 409 and "is not on this host" in r.text()
    api = hub_api(page, platform, "POST", "/users/admin/server", data={"profile": "gpu-cuda"})
    assert api.status == 409 and "is not on this host" in api.json()["message"]
    # an image outside the allowed list: the form used to drop it silently and start the default
    r = form_post(page, platform, {"profile": "cpu-small", "image": "evil/miner:1"})
    assert r.status == 400 and "evil/miner:1 not in allowed list" in r.text()
    assert server_of(page, platform, "admin") is None
    gpus = hub_api(page, platform, "GET", "/gpuhub/v1/gpus").json()["devices"]
    assert all(d["state"] == "free" for d in gpus)


def hold_both_gpus_and_wait_for_one(page, platform) -> None:
    """holder1 and holder2 hold both simulated GPUs (started if not running yet); the admin starts
    gpu-1 from the form and waits, 1st in line."""
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    stop_own_server(page, platform)
    holders = ["holder1", "holder2"]
    for user in holders:
        hub_api(page, platform, "POST", f"/users/{user}")
        if server_of(page, platform, user) is None:
            hub_api(page, platform, "POST", f"/users/{user}/server", data={"profile": "gpu-1"})
    for user in holders:
        deadline = time.monotonic() + 120
        while not (server_of(page, platform, user) or {}).get("ready"):
            assert time.monotonic() < deadline, f"{user}'s server did not start"
            time.sleep(1)
    page.goto(f"{platform.url}/hub/spawn")
    page.click("label[for=gpuhub-profile-gpu-1]")
    page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    page.wait_for_function(
        "() => (document.querySelector('#progress-message')?.innerText ?? '').includes('1st of 1 in line')", timeout=60_000
    )


def test_leave_the_line_from_the_spawn_page(page, platform):
    hold_both_gpus_and_wait_for_one(page, platform)
    (waiting,) = hub_api(page, platform, "GET", "/gpuhub/v1/users/admin/wait").json()["waiting"]
    assert (waiting["line"], waiting["place"], waiting["in_line"], waiting["profile"]) == ("exclusive×1", 1, 1, "gpu-1")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Leave the line").click()
    page.wait_for_url(re.compile(r"/hub/home"), timeout=30_000)
    deadline = time.monotonic() + 30
    while server_of(page, platform, "admin") is not None:
        assert time.monotonic() < deadline, "the admin's start was not cancelled"
        time.sleep(0.5)
    assert hub_api(page, platform, "GET", "/gpuhub/v1/queue").json()["waiting"] == []
    assert hub_api(page, platform, "GET", "/gpuhub/v1/users/admin/wait").json() == {"waiting": []}


def test_the_spawn_page_says_when_a_borrowed_gpu_frees_and_leaving_withdraws_the_warning(page, platform):
    """holder1 holds a GPU within quota; "borrower", whose quota allows no GPU, borrows the other; the
    admin waits: the borrower is warned (15 minutes' grace) and the admin's spawn page says when the
    GPU likely frees and why; leaving the line withdraws the borrower's warning."""
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    stop_own_server(page, platform)
    for user in ("holder1", "holder2", "borrower"):
        hub_api(page, platform, "POST", f"/users/{user}")
    if server_of(page, platform, "holder2") is not None:
        hub_api(page, platform, "DELETE", "/users/holder2/server")
    deadline = time.monotonic() + 60
    while server_of(page, platform, "holder2") is not None:  # stopped: its GPU released
        assert time.monotonic() < deadline, "holder2's server did not stop"
        time.sleep(0.5)
    assert hub_api(page, platform, "PUT", "/gpuhub/v1/quotas/user/borrower", data={"max_gpus": 0}).status == 200
    for user in ("holder1", "borrower"):
        if server_of(page, platform, user) is None:
            hub_api(page, platform, "POST", f"/users/{user}/server", data={"profile": "gpu-1"})
        deadline = time.monotonic() + 120
        while not (server_of(page, platform, user) or {}).get("ready"):
            assert time.monotonic() < deadline, f"{user}'s server did not start"
            time.sleep(1)
    (server,) = hub_api(page, platform, "GET", "/gpuhub/v1/users/borrower/overview").json()["servers"]
    assert server["borrowed"] is True

    page.goto(f"{platform.url}/hub/spawn")
    page.click("label[for=gpuhub-profile-gpu-1]")
    page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    page.wait_for_function(
        "() => (document.querySelector('#progress-message')?.innerText ?? '').includes('a borrowed GPU is taken back')", timeout=60_000
    )
    message = page.locator("#progress-message").inner_text()
    assert re.fullmatch(r"waiting for a GPU \(exclusive×1\): 1st of 1 in line; a GPU likely frees in about 1[45] minutes \(a borrowed GPU is taken back\)", message), message
    page.screenshot(path=str(ARTIFACTS / "waiting.png"), full_page=True)
    (wait,) = hub_api(page, platform, "GET", "/gpuhub/v1/users/admin/wait").json()["waiting"]
    assert wait["estimate_basis"] == "a borrowed GPU is taken back" and 840 <= wait["estimate_seconds"] <= 900, wait
    notices = hub_api(page, platform, "GET", "/gpuhub/v1/notices/borrower").json()["notices"]
    assert [n["source"] for n in notices] == ["borrowing"] and "it will be stopped at" in notices[0]["message"]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Leave the line").click()
    page.wait_for_url(re.compile(r"/hub/home"), timeout=30_000)
    deadline = time.monotonic() + 30
    while hub_api(page, platform, "GET", "/gpuhub/v1/notices/borrower").json()["notices"]:
        assert time.monotonic() < deadline, "the borrower's warning was not withdrawn"
        time.sleep(0.5)
    assert (server_of(page, platform, "borrower") or {}).get("ready")  # kept its GPU
    hub_api(page, platform, "DELETE", "/users/borrower/server")
    hub_api(page, platform, "DELETE", "/gpuhub/v1/quotas/user/borrower")


def test_a_waiter_keeps_its_place_across_a_hub_restart(page, platform):
    hold_both_gpus_and_wait_for_one(page, platform)
    message = page.locator("#progress-message")
    assert page.get_by_role("button", name="Leave the line").is_visible()

    subprocess.run([*platform.compose, "restart", "hub"], cwd=REPO, env=platform.env, check=True, capture_output=True)
    page.wait_for_function(
        "() => (document.querySelector('#progress-message')?.innerText ?? '').includes('kept across a hub restart')",
        timeout=150_000,
    )
    assert message.inner_text() == (
        "waiting for a GPU (exclusive×1): 1st of 1 in line (your place was kept across a hub restart)"
    )
    log_in_again = page.context.new_page()  # the admin's cookie still works after the restart
    log_in_again.goto(f"{platform.url}/hub/home")
    hub_api(log_in_again, platform, "DELETE", "/users/holder1/server")  # a GPU frees
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=150_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    for user in ["admin", "holder2"]:
        hub_api(log_in_again, platform, "DELETE", f"/users/{user}/server")
