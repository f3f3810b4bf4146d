"""OpenID Connect login with the provider's groups (issue 18), in Chromium: a real OIDC provider
process (PyPI's oidc-provider-mock: discovery, authorize, token, userinfo; its login form takes a
subject) and a real hub with ``[hub] authenticator = "oidc"``. The ``groups`` claim becomes the
person's JupyterHub groups, with that group's quota and profile, and follows the provider at the
next login; a course group the provider does not own is kept."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.directory_server import ML_LAB_PROFILE, ML_LAB_QUOTAS
from tests.hubprocess import HubProcess, answers_within, free_port, fresh_engine_or_fail

PREFIX = "gpuhuboidc"
CLIENT_SECRET = "oidc-test-client-secret"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("oidc") / "provider.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers_within(f"{url}/.well-known/openid-configuration", 30, alive=lambda: process.poll() is None):
            pytest.fail(f"the OIDC provider did not start: {open(log.name).read()[-2000:]}", pytrace=False)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def set_claims(provider: str, sub: str, **claims) -> None:
    r = requests.put(f"{provider}/users/{sub}", json={"preferred_username": sub, "email": f"{sub}@example.org", **claims}, timeout=10)
    assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def oidc_hub(provider, tmp_path_factory):
    fresh_engine_or_fail("browser", PREFIX)
    found = requests.get(f"{provider}/.well-known/openid-configuration", timeout=10).json()
    h = HubProcess(tmp_path_factory.mktemp("oidc-hub"), prefix=PREFIX)
    h.hub_settings = 'authenticator = "oidc"'
    h.extra_env["GPUHUB_OIDC_CLIENT_SECRET"] = CLIENT_SECRET
    h.profiles += ML_LAB_PROFILE
    h.more_settings = f'''
[oidc]
authorize_url = "{found["authorization_endpoint"]}"
token_url = "{found["token_endpoint"]}"
userinfo_url = "{found["userinfo_endpoint"]}"
client_id = "gpuhub"
provider_name = "Example SSO"
allow_http = true   # the provider on loopback
''' + ML_LAB_QUOTAS
    h.start()
    yield h
    h.stop()
    h.remove_docker_objects()


def sign_in(page, hub, sub: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.get_by_text("Sign in with Example SSO").click()
    page.wait_for_selector("input[name=sub]")  # the provider's own page
    page.fill("input[name=sub]", sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{hub.url}/hub/**", timeout=30_000)


def groups_of(hub, name: str) -> list[str]:
    return sorted(hub.api("GET", f"/users/{name}", expect=200).json()["groups"])


def test_oidc_login_brings_the_providers_groups(own_page, provider, oidc_hub):
    page = own_page
    set_claims(provider, "dana", groups=["ml-lab", "staff"])
    sign_in(page, oidc_hub, "dana")
    page.goto(f"{oidc_hub.url}/hub/spawn")
    page.wait_for_selector("input[name=profile]")
    assert page.locator("#gpuhub-profile-lab-gpu").count() == 1  # ml-lab's profile offered
    assert groups_of(oidc_hub, "dana") == ["ml-lab", "staff"]
    oidc_hub.api("POST", "/groups/course-dl101", {"users": ["dana"]}, expect=201)

    # the provider no longer lists ml-lab: gone at the next login, with its profile; the course stays
    set_claims(provider, "dana", groups=["staff"])
    page.context.clear_cookies()
    sign_in(page, oidc_hub, "dana")
    assert groups_of(oidc_hub, "dana") == ["course-dl101", "staff"]
    page.goto(f"{oidc_hub.url}/hub/spawn")
    page.wait_for_selector("input[name=profile]")
    assert page.locator("#gpuhub-profile-lab-gpu").count() == 0


def test_a_person_the_provider_refuses_does_not_get_in(own_page, provider, oidc_hub):
    page = own_page
    page.goto(f"{oidc_hub.url}/hub/login")
    page.get_by_text("Sign in with Example SSO").click()
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(f"{oidc_hub.url}/hub/**")  # back at the hub, with the provider's "access_denied"
    assert "access_denied" in page.url or "denied" in page.content().lower()
    page.goto(f"{oidc_hub.url}/hub/home")
    assert "/hub/login" in page.url  # not logged in
