"""Empty tables say what their emptiness means, and a session window shows both ends with their
dates, in Chromium.

- On a hub with no GPU (a real hub from ``tests.hubprocess``, ``[gpus] inventory = "none"``, no quota
  rule, no usage, no session): the GPU admin page's GPU, quota, usage and queue tables and the
  sessions page's table each say what their emptiness means.
- On the composed platform (the tier's shared ``platform``; this file runs after test_admin_page and
  test_browser, which leave nobody waiting, and before test_sessions_page, so there is no session
  yet): the queue, a usage range without use, the sessions table; a session whose window crosses
  midnight shows both ends with their dates, and its empty roster says so. The session is deleted
  at the end.
"""

import re
from datetime import datetime, time, timedelta, timezone

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_admin_page import hub_api
from tests.e2e.test_browser import log_in
from tests.hubprocess import HubError, HubProcess, remove_prefixed

PREFIX = "gpuhubtest-empty"


@pytest.fixture(scope="module")
def gpuless_hub(tmp_path_factory):
    remove_prefixed(PREFIX)
    hub = HubProcess(tmp_path_factory.mktemp("gpuless"), prefix=PREFIX)
    hub.profiles += '\n[gpus]\ninventory = "none"\n'
    try:
        hub.start()
    except HubError as e:
        pytest.fail(str(e), pytrace=False)
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def empty_line(page, table: str) -> str:
    """The line an empty table shows (one row across every column), once the page has loaded it."""
    row = page.locator(f"#{table} tbody tr.gpuhub-empty")
    row.wait_for()
    assert page.locator(f"#{table} tbody tr").count() == 1
    cells = row.locator("td")
    assert cells.count() == 1 and int(cells.get_attribute("colspan")) == page.locator(f"#{table} thead th").count()
    return row.inner_text()


def test_a_hub_without_gpus_says_what_each_empty_table_means(own_page, gpuless_hub):
    page = own_page
    log_in(page, gpuless_hub)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)

    page.goto(f"{gpuless_hub.url}/hub/gpuhub/admin")
    assert empty_line(page, "gpus-table") == (
        "No GPUs on this hub: GPU profiles cannot start here (inventory: no GPU). "
        'Name where GPUs come from in the settings file, [gpus] inventory (docs/admin.md, "GPUs").'
    )
    page.click("button[data-tab=quotas]")
    assert empty_line(page, "quotas-table") == "No quota rules: nobody has a limit. Set one below, or in [[quotas]] of the settings file."
    page.click("button[data-tab=usage]")
    assert re.fullmatch(
        r"No GPU-hours from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d \(UTC\): nobody held a GPU in this range\.", empty_line(page, "usage-table")
    )
    page.click("button[data-tab=queue]")
    assert empty_line(page, "queue-table").startswith("Nobody is waiting for a GPU")

    page.goto(f"{gpuless_hub.url}/hub/gpuhub/sessions")
    assert empty_line(page, "sessions-table") == "No sessions yet: create one with the form below."
    assert page.inner_text("#sessions-devices") == "GPUs to reserve: none on this hub"


def test_empty_tables_and_a_window_across_midnight_on_the_platform(page, platform):
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)

    # the GPU admin page: nobody waits; a week without use says so
    page.goto(f"{platform.url}/hub/gpuhub/admin#queue")
    assert empty_line(page, "queue-table").startswith("Nobody is waiting for a GPU")
    page.click("button[data-tab=usage]")
    page.fill("#u-since", "2020-01-06")
    page.fill("#u-until", "2020-01-13")
    page.click("#usage-form button[type=submit]")
    page.wait_for_selector("#usage-table tr.gpuhub-empty:has-text('2020-01-06 to 2020-01-13')")
    assert empty_line(page, "usage-table") == "No GPU-hours from 2020-01-06 to 2020-01-13 (UTC): nobody held a GPU in this range."
    assert page.locator("#usage-chart svg").count() == 0

    # the sessions page: none yet; then one open now whose window ends after midnight
    page.goto(f"{platform.url}/hub/gpuhub/sessions")
    assert empty_line(page, "sessions-table") == "No sessions yet: create one with the form below."
    now = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    start = now - timedelta(minutes=10)
    end = datetime.combine(now.date() + timedelta(days=1), time(0, 30))
    page.wait_for_selector("#s-profile option[value=cpu-small]", state="attached")
    page.fill("#s-name", "night")
    page.fill("#s-title", "Night lab")
    page.select_option("#s-profile", "cpu-small")
    page.fill("#s-start", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#s-end", end.strftime("%Y-%m-%dT%H:%M"))
    page.click("#session-save")
    page.wait_for_selector("#gpuhub-ok:text-is('Saved session night')")
    cells = page.locator("#sessions-table tr[data-session=night] td")
    assert cells.nth(2).inner_text() == f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
    assert cells.nth(3).inner_text() == f"open until {end:%Y-%m-%d %H:%M}"
    assert page.locator("#sessions-table tr.gpuhub-empty").count() == 0
    # saving showed its roster: nobody on it yet
    assert empty_line(page, "roster-table") == "No roster yet: nobody can start this session but its instructors. Import a CSV above."
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sessions-empty-roster.png"), full_page=True)

    # leave the platform as found: no session
    hub_api(page, platform, "DELETE", "/gpuhub/v1/sessions/night")
    page.reload()
    assert empty_line(page, "sessions-table") == "No sessions yet: create one with the form below."
