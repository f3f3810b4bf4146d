"""A person in Chromium: log in on the login page, pick a profile on the spawn form, land in
JupyterLab, log out. Against the composed platform, with the real hub and user images."""

import re
from urllib.parse import urlsplit

import docker

from tests.e2e.conftest import ARTIFACTS, PREFIX


def log_in(page, platform, password=None):
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "admin")
    page.fill("#password_input", password or platform.admin_password)
    page.click("#login_submit")


def test_wrong_password_is_refused(page, platform):
    log_in(page, platform, password="not-the-password")
    page.wait_for_selector("text=/Invalid username or password|incorrect/i")
    assert "/hub/login" in page.url


def test_login_pick_profile_jupyterlab_logout(page, platform):
    log_in(page, platform)

    # The spawn form lists the profiles; the GPU one with its free capacity, labelled simulated.
    page.wait_for_selector("input[name=profile]", timeout=60_000)
    assert page.is_checked("#gpuhub-profile-cpu-small")  # the default
    assert not page.is_disabled("#gpuhub-profile-gpu-1")
    gpu_card = page.locator("label[for=gpuhub-profile-gpu-1] .gpuhub-profile-capacity")
    assert gpu_card.inner_text() == "2 of 2 NVIDIA H100 80GB HBM3 free"
    assert page.locator(".gpuhub-gpu-source").inner_text().startswith("GPU figures: SIMULATED inventory")
    assert page.locator(".gpuhub-profile-facts").first.inner_text() == "1 CPU · 1 GB RAM · 256 MB shm · no GPU"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "spawn-page.png"))

    page.click("label[for=gpuhub-profile-cpu-large]")
    assert page.is_checked("#gpuhub-profile-cpu-large")
    page.get_by_role("button", name=re.compile("^Start$", re.I)).click()

    # JupyterLab, in the container of the picked profile
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=150_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    page.wait_for_selector(".jp-Launcher", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))
    (container,) = docker.from_env().containers.list(filters={"name": f"^{PREFIX}-admin-"})
    assert container.labels["org.gpuhub.profile"] == "cpu-large"
    assert container.attrs["HostConfig"]["NanoCpus"] == 0 and container.attrs["HostConfig"]["CpuQuota"] == 200_000

    # Log out from JupyterLab's File menu
    page.click("div.lm-MenuBar-itemLabel:text-is('File')")
    page.click("li.lm-Menu-item[data-command='hub:logout']")
    page.wait_for_url(re.compile(r"/hub/(login|logout)"), timeout=30_000)
    page.wait_for_selector("#login_submit")
    page.goto(f"{platform.url}/hub/home")
    assert "/hub/login" in page.url  # the session is gone


def test_gpu_status_bar_and_environment_check_from_the_palette(page, platform):
    """In the user's JupyterLab (a CPU-only server): the status bar says "no GPU"; "Check GPU environment"
    from the command palette runs the check in the container and shows the report; copy works."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=platform.url)
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/spawn|/user/admin/lab"), timeout=60_000)
    if "/hub/spawn" in page.url:  # no server running yet (this test alone)
        page.click("label[for=gpuhub-profile-cpu-small]")
        page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=150_000)
    page.wait_for_selector(".jp-Launcher", timeout=90_000)

    status = page.wait_for_selector(".gpuhub-GpuStatus[data-gpuhub-state=no-gpu]", timeout=30_000)
    assert status.inner_text() == "no GPU"
    assert status.get_attribute("title") == "no GPU assigned to this server"

    # the launcher offers the check too
    assert page.locator(".jp-LauncherCard", has_text="Check GPU environment").count() == 1

    page.keyboard.press("Control+Shift+C")
    page.fill(".lm-CommandPalette-input", "Check GPU environment")
    page.keyboard.press("Enter")
    page.wait_for_selector(".gpuhub-EnvCheck-table", timeout=120_000)
    rows = {row.get_attribute("data-check"): row for row in page.query_selector_all(".gpuhub-EnvCheck-table tbody tr")}
    assert {"non-root", "home", "limits", "shm", "torch", "cuda", "driver", "matmul"} <= set(rows)
    assert rows["non-root"].get_attribute("data-status") == "pass"
    assert rows["home"].get_attribute("data-status") == "pass"  # the home volume
    assert "torch 2.13.0" in rows["torch"].inner_text()
    assert rows["cuda"].get_attribute("data-status") in ("skip", "fail")
    assert "CPU build" in rows["cuda"].inner_text()
    assert rows["matmul"].get_attribute("data-status") == "skip"
    assert "no GPU assigned to this server" in rows["matmul"].inner_text()
    (container,) = docker.from_env().containers.list(filters={"name": f"^{PREFIX}-admin-"})
    cpus = {"cpu-small": 1, "cpu-large": 2}[container.labels["org.gpuhub.profile"]]  # the server's profile
    assert f"memory {cpus}.00 GiB, CPU {cpus} CPUs" in rows["limits"].inner_text()  # its caps, read from cgroups
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "envcheck.png"))

    page.click(".gpuhub-EnvCheck-copy")
    page.wait_for_selector(".gpuhub-EnvCheck-copy:text-is('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(f"gpuhub environment check — admin at {urlsplit(platform.url).netloc}")
    assert "[PASS] Running as a non-root user: uid 1000" in copied
    assert re.search(r"\[SKIP\] torch\.cuda\.is_available\(\): False \(expected True\)\n\s+this torch is a CPU build", copied)

    # the status bar item opens the GPU panel
    status.click()
    panel = page.wait_for_selector("#gpuhub-gpu-panel", state="visible")
    assert "no GPU assigned to this server" in panel.inner_text()
    assert "Memory:" in panel.inner_text() and f"CPU: {cpus} CPUs" in panel.inner_text()
