"""The GPU admin page in Chromium: an admin sets a group quota on the page (a bad value is refused
with the field named); a member of the group is refused at spawn with the quota's message; the usage
CSV downloads from the page and matches the usage records."""

import csv
import io
import re
from collections import defaultdict

from tests.e2e.conftest import ARTIFACTS, browser_context
from tests.e2e.test_browser import log_in

STUDENT, STUDENT_PASSWORD = "student", "a-long-student-password-7"


def sign_up(page, platform):
    page.goto(f"{platform.url}/hub/signup")
    page.fill("#username_input", STUDENT)
    if page.locator("#email_input").count():
        page.fill("#email_input", "student@example.org")
    page.fill("#password_input", STUDENT_PASSWORD)
    page.fill("#password_confirmation_input", STUDENT_PASSWORD)
    page.click("#signup_submit")
    page.wait_for_selector("text=/sent to the admin/")


def hub_api(page, platform, method, path, data=None):
    """The hub's REST API with the logged-in admin's cookie and XSRF token (as JupyterHub's pages do)."""
    token = page.evaluate("window.jhdata.xsrf_token")
    r = page.request.fetch(f"{platform.url}/hub/api{path}", method=method, headers={"X-XSRFToken": token}, data=data)
    assert r.status < 400 or r.status == 409, (method, path, r.status, r.text())
    return r


def stop_own_server(page, platform):
    page.goto(f"{platform.url}/hub/home")
    if page.locator("#stop").count():
        page.click("#stop")
        # #start ("My Server") is on the page while the server runs too: the stop is done when the
        # hub's page hides the stop button (after the DELETE returned)
        page.wait_for_selector("#stop", state="hidden", timeout=60_000)


def test_admin_sets_a_group_quota_member_is_refused_usage_csv_matches(browser, page, platform):
    student = browser_context(browser)
    student_page = student.new_page()
    student_page.set_default_timeout(30_000)
    sign_up(student_page, platform)

    # the admin approves the sign-up and puts the student in the course group
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    page.goto(f"{platform.url}/hub/authorize/{STUDENT}")
    page.goto(f"{platform.url}/hub/home")
    hub_api(page, platform, "POST", f"/users/{STUDENT}")  # the hub account (the sign-up made the login)
    hub_api(page, platform, "POST", "/groups/course")
    hub_api(page, platform, "POST", "/groups/course/users", data={"users": [STUDENT]})

    # the admin has a GPU server for a while, so there is usage to export
    stop_own_server(page, platform)
    page.goto(f"{platform.url}/hub/spawn")
    page.click("label[for=gpuhub-profile-gpu-1]")
    page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=150_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    stop_own_server(page, platform)

    # the page: a "GPU admin" link in the hub's navigation bar; the GPUs tab first
    page.goto(f"{platform.url}/hub/home")
    page.click("a.nav-link:text-is('GPU admin')")
    page.wait_for_selector("#gpus-table tbody tr")
    assert "SIMULATED" in page.inner_text("#gpus-source")
    assert page.locator("#gpus-table tbody tr").count() == 2

    # Quotas: a bad value is refused with the field named and nothing saved; a good one is saved
    page.click("button[data-tab=quotas]")
    page.select_option("#q-scope", "group")
    page.fill("#q-name", "course")
    page.fill("#q-gpu_hours_per_week", "-1")
    page.click("#quota-save")
    page.wait_for_selector("#gpuhub-error:not(.d-none)")
    assert "gpu_hours_per_week" in page.inner_text("#gpuhub-error") and "outside 0 to 168000" in page.inner_text("#gpuhub-error")
    assert page.get_attribute("#q-gpu_hours_per_week", "class").count("is-invalid") == 1
    assert "course" not in page.inner_text("#quotas-table")
    page.fill("#q-gpu_hours_per_week", "0")
    page.fill("#q-max_cpus", "2")
    page.click("#quota-save")
    page.wait_for_selector("#gpuhub-ok:not(.d-none)")
    row = page.locator("#quotas-table tbody tr", has_text="course")
    assert row.count() == 1 and "set here" in row.inner_text()
    page.fill("#e-user", STUDENT)
    page.click("#effective-form button")
    page.wait_for_selector("#effective-table:not(.d-none)")
    assert "group course (database)" in page.inner_text("#effective-table")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-quotas.png"), full_page=True)

    # the student, a member of the group, is refused at spawn with the quota's message
    student_page.goto(f"{platform.url}/hub/login")
    student_page.fill("#username_input", STUDENT)
    student_page.fill("#password_input", STUDENT_PASSWORD)
    student_page.click("#login_submit")
    student_page.wait_for_selector("input[name=profile]", timeout=60_000)
    student_page.click("label[for=gpuhub-profile-gpu-1]")
    student_page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    student_page.wait_for_selector("text=/Weekly GPU-hours used up/", timeout=60_000)
    message = student_page.inner_text("body")
    assert "0 GPU-hours in the last 7 days" in message and "set by group course (database)" in message and "0.00 remain" in message
    student_page.screenshot(path=str(ARTIFACTS / "quota-refused.png"))
    student.close()

    # Usage: the chart and table, then the CSV download, which matches the usage records
    page.click("button[data-tab=usage]")
    page.click("#usage-form button[type=submit]")
    page.wait_for_selector("#usage-table tbody tr:not(.gpuhub-empty)", timeout=30_000)
    assert page.locator("#usage-chart svg rect").count() >= 1
    assert page.locator("#usage-table thead").inner_text().split() == ["User", "GPU-hours", "held", "measured", "busy", "busy", "share"]
    page.wait_for_selector("#idle-table tbody tr")  # held but idle now: a row, or a line saying why there is none
    assert page.locator("#usage-readings").inner_text()  # where the busy figures come from
    page.screenshot(path=str(ARTIFACTS / "admin-usage.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#usage-csv")
    totals = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    records_url = page.get_attribute("#usage-records-csv", "href")
    records = list(csv.DictReader(io.StringIO(page.request.get(f"{platform.url}{records_url}").text())))
    per_user = defaultdict(float)
    for r in records:
        per_user[r["user"]] += float(r["gpu_seconds"])
    assert records and all(r["end"] for r in records if r["user"] == "admin")  # closed: figures are final
    assert {t["user"] for t in totals} == set(per_user)
    for t in totals:  # each CSV rounds to whole GPU-seconds
        assert abs(int(t["gpu_seconds"]) - per_user[t["user"]]) <= 1, (t, per_user)
    assert per_user["admin"] > 0
