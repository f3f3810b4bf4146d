"""LDAP login with the directory's groups (issue 18), against a real directory server (Debian's slapd on
loopback, ``tests.directory_server``) and a real hub: a member of ``ml-lab`` gets that group's quota
and profile, loses them at the next login once removed from the group, keeps a course group the
directory does not own; a wrong password is refused; an unreachable or silent directory makes the
login say so while the hub keeps serving everyone else."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.directory_server import ML_LAB_PROFILE, ML_LAB_QUOTAS, DirectoryServer, missing
from tests.hubprocess import HubProcess, fresh_engine_or_fail, login

PREFIX = "gpuhubldap"
PASSWORDS = {"alice": "alice-directory-pw", "bob": "bob-directory-pw"}


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    problem = missing()
    if problem:
        pytest.fail(f"the LDAP tests cannot run: {problem}", pytrace=False)
    with DirectoryServer(tmp_path_factory.mktemp("slapd")) as server:
        server.add_person("alice", PASSWORDS["alice"], groups=("ml-lab", "students"))
        server.add_person("bob", PASSWORDS["bob"], groups=("students",))
        server.add_person("carol", "carol-directory-pw", groups=("ml-lab",))  # a groupOfNames keeps a member
        yield server


@pytest.fixture(scope="module")
def ldap_hub(directory, tmp_path_factory):
    fresh_engine_or_fail("integration", PREFIX)
    h = HubProcess(tmp_path_factory.mktemp("ldap-hub"), prefix=PREFIX)
    h.hub_settings = 'authenticator = "ldap"'
    h.profiles += ML_LAB_PROFILE
    h.more_settings = directory.settings(timeout="2") + ML_LAB_QUOTAS
    h.extra_config += """
c.JupyterHub.load_roles.append({"name": "quota-reader", "scopes": ["custom:gpuhub:read"], "services": ["gpuhub-harness"]})
"""
    h.start()
    yield h
    h.stop()
    h.remove_docker_objects()


def groups_of(hub, name: str) -> list[str]:
    return sorted(hub.api("GET", f"/users/{name}", expect=200).json()["groups"])


def quota_of(hub, name: str) -> dict:
    """``name``'s effective limits: {field: (value, where it comes from)}."""
    r = hub.session.get(f"{hub.url}/hub/api/gpuhub/v1/users/{name}/quota", timeout=30)
    assert r.status_code == 200, r.text
    return {field: (limit["value"], limit["source"]) for field, limit in r.json()["limits"].items()}


def profiles_offered(session, hub) -> set[str]:
    form = session.get(f"{hub.url}/hub/spawn", timeout=30).text
    return {p for p in ("cpu-test", "gpu-1", "lab-gpu") if f'value="{p}"' in form}


def test_directory_groups_become_hub_groups_and_follow_the_directory(directory, ldap_hub):
    session, r = login(ldap_hub, "alice", PASSWORDS["alice"])
    assert r.status_code == 302, r.text[:500]
    assert groups_of(ldap_hub, "alice") == ["ml-lab", "students"]
    quota = quota_of(ldap_hub, "alice")
    assert quota["max_gpus"][0] == 2 and quota["gpu_hours_per_week"][0] == 40 and "ml-lab" in quota["max_gpus"][1], quota
    assert "lab-gpu" in profiles_offered(session, ldap_hub)

    # a course group the directory does not own (a session's roster does this), made in the hub
    ldap_hub.api("POST", "/groups/course-dl101", {"users": ["alice"]}, expect=201)

    directory.remove_member("ml-lab", "alice")
    session, r = login(ldap_hub, "alice", PASSWORDS["alice"])
    assert r.status_code == 302
    assert groups_of(ldap_hub, "alice") == ["course-dl101", "students"]  # ml-lab gone, the course kept
    quota = quota_of(ldap_hub, "alice")
    assert quota["max_gpus"][0] == 0 and "ml-lab" not in quota["max_gpus"][1], quota
    assert "lab-gpu" not in profiles_offered(session, ldap_hub)
    properties = ldap_hub.api("GET", "/groups/ml-lab", expect=200).json()["properties"]
    assert properties == {"gpuhub.directory": "ldap"}

    directory.add_member("ml-lab", "alice")  # back in: back in the group at the next login
    assert login(ldap_hub, "alice", PASSWORDS["alice"])[1].status_code == 302
    assert groups_of(ldap_hub, "alice") == ["course-dl101", "ml-lab", "students"]


@pytest.mark.parametrize("username, password", [("alice", "not-her-password"), ("nobody", "whatever-pw-123"), ("alice", " ")])
def test_a_wrong_password_or_unknown_person_is_refused(ldap_hub, username, password):
    _, r = login(ldap_hub, username, password)
    assert r.status_code == 403 and "Invalid username or password" in r.text  # JupyterHub's login page again
    assert "jupyterhub-session-id" not in r.cookies


def test_an_unreachable_directory_fails_logins_with_a_message_not_the_hub(directory, ldap_hub):
    bob, r = login(ldap_hub, "bob", PASSWORDS["bob"])
    assert r.status_code == 302
    directory.pause()  # connections accepted, nothing answered: the login waits for [ldap] timeout (2 s)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            began = time.monotonic()
            pending = pool.submit(login, ldap_hub, "alice", PASSWORDS["alice"])
            time.sleep(0.5)
            # meanwhile the hub serves others: a logged-in person's page, the health check
            served = bob.get(f"{ldap_hub.url}/hub/home", timeout=10)
            served_in = time.monotonic() - began
            _, refused = pending.result(timeout=30)
            waited = time.monotonic() - began
        assert served.status_code == 200 and served_in < 1.5, served_in
        assert refused.status_code == 503 and "The directory cannot be reached" in refused.text
        assert 1.5 < waited < 10, waited
    finally:
        directory.resume()
    directory.stop()  # nobody listening: refused at once, same message
    _, r = login(ldap_hub, "alice", PASSWORDS["alice"])
    assert r.status_code == 503 and "The directory cannot be reached" in r.text
    assert "did not answer" in ldap_hub.log_tail(200)
