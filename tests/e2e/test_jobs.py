"""Batch jobs on the composed platform, as a person meets them: a job submitted with the ``gpuhub`` CLI
in the hub's container (a token of the person's), its row on the home page in Chromium going from
queued or running to succeeded with its GPU-hours, its output shown on the page; a second job
cancelled from the page while it runs; the admin page's Jobs tab lists both."""

import re
import subprocess

from tests.e2e.conftest import ARTIFACTS, REPO
from tests.e2e.test_admin_page import hub_api, stop_own_server
from tests.e2e.test_browser import log_in


def gpuhub_cli(platform, token, *args):
    return subprocess.run(
        [*platform.compose, "exec", "-T", "-e", f"GPUHUB_TOKEN={token}", "hub", "gpuhub", *args],
        cwd=REPO, env=platform.env, capture_output=True, text=True, timeout=120,
    )


def test_a_job_from_the_cli_shows_on_the_home_page_with_its_output_and_one_is_cancelled(page, platform):
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    stop_own_server(page, platform)
    token = hub_api(page, platform, "POST", "/users/admin/tokens", data={"expires_in": 900, "note": "e2e jobs"}).json()["token"]
    done = gpuhub_cli(platform, token, "job", "submit", "--profile", "gpu-1", "--name", "hello", "python", "--", "-c",
                      "import os; print('hello from a job on', os.environ['NVIDIA_VISIBLE_DEVICES'])")
    assert done.returncode == 0, done.stderr
    first = int(done.stdout.split()[1])
    slow = gpuhub_cli(platform, token, "job", "submit", "--profile", "cpu-small", "--name", "slow", "sleep", "--", "600")
    assert slow.returncode == 0, slow.stderr
    second = int(slow.stdout.split()[1])

    page.goto(f"{platform.url}/hub/home")
    row = page.locator(f"#gpuhub-job-list tr[data-job='{first}']")
    for _ in range(60):  # the page shows the state it read: reload until the job has ended
        row.wait_for(timeout=30_000)
        if "succeeded" in row.inner_text():
            break
        page.wait_for_timeout(1000)
        page.reload()
    text = row.inner_text()
    assert "hello" in text and "gpu-1" in text and "succeeded" in text and re.search(r"\b0\.\d\d\b", text), text
    row.get_by_role("button", name="Output").click()
    page.wait_for_selector("#gpuhub-job-output:not(.d-none), #gpuhub-error:not(.d-none)")
    assert page.locator("#gpuhub-error").is_hidden(), page.inner_text("#gpuhub-error")
    output = page.locator("#gpuhub-job-output")
    assert re.search(r"hello from a job on GPU-[0-9a-f-]+", output.inner_text()), output.inner_text()

    running = page.locator(f"#gpuhub-job-list tr[data-job='{second}']")
    assert "slow" in running.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    running.get_by_role("button", name="Cancel").click()
    page.wait_for_selector(f"#gpuhub-ok:has-text('Job {second} cancelled.')")
    page.wait_for_selector(f"#gpuhub-job-list tr[data-job='{second}']:has-text('cancelled')", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)

    listed = gpuhub_cli(platform, token, "job", "list")
    assert listed.returncode == 0 and [str(second), "admin", "slow", "cpu-small", "cancelled"] in [
        line.split()[:5] for line in listed.stdout.splitlines()
    ], listed.stdout
    page.goto(f"{platform.url}/hub/gpuhub/admin#jobs")
    admin_rows = page.locator("#jobs-table tbody")
    admin_rows.locator("tr", has_text="hello").wait_for(timeout=30_000)
    assert "succeeded" in admin_rows.locator("tr", has_text="hello").inner_text()
    assert "cancelled: cancelled by admin" in admin_rows.locator("tr", has_text="slow").inner_text()
