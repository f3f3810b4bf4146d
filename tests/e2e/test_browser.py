"""A person in Chromium: log in on the login page, pick a profile on the spawn form, land in
JupyterLab, log out. Against the composed platform, with the real hub and user images."""

import re

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
