"""The sessions page in Chromium: an instructor (here the admin, who holds every gpuhub scope) creates
a session on the page and imports a roster CSV (the report names the duplicate and the invalid row);
a student on the roster finds the session preselected on the spawn form and gets JupyterLab; a
student not on the roster opens the session's start link and is refused with the message."""

import re
from datetime import datetime, timedelta, timezone

import docker

from tests.e2e.conftest import ARTIFACTS, PREFIX, browser_context
from tests.e2e.test_browser import log_in

PASSWORD = "a-long-class-password-7"


def sign_up_and_approve(browser, admin_page, platform, name):
    context = browser_context(browser)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{platform.url}/hub/signup")
    page.fill("#username_input", name)
    if page.locator("#email_input").count():
        page.fill("#email_input", f"{name}@example.org")
    page.fill("#password_input", PASSWORD)
    page.fill("#password_confirmation_input", PASSWORD)
    page.click("#signup_submit")
    page.wait_for_selector("text=/sent to the admin/")
    admin_page.goto(f"{platform.url}/hub/authorize/{name}")
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/"), timeout=60_000)
    return page


def local(t: datetime) -> str:  # the datetime-local input's value (the page sends it as UTC)
    return t.strftime("%Y-%m-%dT%H:%M")


def test_instructor_creates_a_session_imports_a_roster_student_starts_outsider_refused(browser, page, platform):
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    learner = sign_up_and_approve(browser, page, platform, "learner")
    visitor = sign_up_and_approve(browser, page, platform, "visitor")

    # the instructor's page, from the navigation bar
    page.goto(f"{platform.url}/hub/home")
    page.click("a.nav-link:text-is('Sessions')")
    page.wait_for_url(re.compile(r"/hub/gpuhub/sessions"))
    page.wait_for_selector("#s-profile option[value=cpu-small]", state="attached")
    now = datetime.now(timezone.utc)
    page.fill("#s-name", "lab1")
    page.fill("#s-title", "Lab one")
    page.select_option("#s-profile", "cpu-small")
    # a window that ends before it starts is refused, naming the field, and nothing is saved
    page.fill("#s-start", local(now + timedelta(hours=2)))
    page.fill("#s-end", local(now + timedelta(hours=1)))
    page.click("#session-save")
    page.wait_for_selector("#gpuhub-error:text-matches('does not end after it starts')")
    assert page.locator("#s-start.is-invalid").count() == 1
    assert page.locator("#sessions-table tbody tr[data-session]").count() == 0
    page.fill("#s-start", local(now - timedelta(minutes=10)))
    page.fill("#s-end", local(now + timedelta(hours=2)))
    page.click("#session-save")
    page.wait_for_selector("#gpuhub-ok:text-is('Saved session lab1')")
    row = page.locator("#sessions-table tr[data-session=lab1]")
    assert "open until" in row.inner_text() and "/hub/spawn?session=lab1" in row.inner_text()

    # the roster: one good row, a duplicate, an invalid one
    page.set_input_files("#roster-file", files=[{"name": "roster.csv", "mimeType": "text/csv",
                                                 "buffer": b"username,name,email\nlearner,Lea Learner,lea@uni.edu\nLEARNER,,\nno body,,\n"}])
    page.click("#roster-import")
    page.wait_for_selector("#roster-counts:text-is('1 added, 0 already present, 1 duplicate row(s), 1 invalid row(s)')")
    problems = page.locator("#roster-problems tbody").inner_text()
    assert "duplicate of row 2" in problems and "no body" in problems
    assert page.locator("#roster-table tr[data-username=learner]").inner_text().startswith("learner\tLea Learner")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sessions-page.png"), full_page=True)

    # the student on the roster: the session first on the form, preselected; JupyterLab
    learner.goto(f"{platform.url}/hub/spawn")
    learner.wait_for_selector("input[name=profile]")
    assert learner.is_checked("#gpuhub-profile-session\\:lab1")
    assert "Class session: Lab one" in learner.locator("label[for='gpuhub-profile-session:lab1']").inner_text()
    learner.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    learner.wait_for_url(re.compile(r"/user/learner/lab"), timeout=150_000)
    learner.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    (container,) = docker.from_env().containers.list(filters={"name": f"^{PREFIX}-learner-"})
    assert container.labels["org.gpuhub.session"] == "lab1" and container.labels["org.gpuhub.profile"] == "cpu-small"

    # a student not on the roster follows the start link: refused, with the reason
    visitor.goto(f"{platform.url}/hub/spawn?session=lab1")
    visitor.wait_for_selector("text=/You are not on the roster of session 'Lab one'/", timeout=60_000)
    visitor.screenshot(path=str(ARTIFACTS / "session-refused.png"))
    assert not docker.from_env().containers.list(filters={"name": f"^{PREFIX}-visitor-"})

    # the instructor sees the student's server running for the session
    page.click("#sessions-table tr[data-session=lab1] button:text-is('Roster')")
    page.wait_for_selector("#roster-table tr[data-username=learner] td:text-is('running (session)')")
