"""The default authenticator's login check on a real (in-memory) hub database: NativeAuthenticator's
rules kept (approved accounts only, blocked after failed attempts), the password hashed on a worker
thread (``gpuhub.hub.auth.password_matches``)."""

import asyncio
import os
import threading

import bcrypt
import pytest
from jupyterhub import orm
from jupyterhub.auth import DummyAuthenticator

from gpuhub.hub.auth import (
    PASSWORD_CHECK_NICENESS,
    PASSWORD_CHECKS,
    GPUHubAuthenticator,
    GPUHubPages,
    NativeLoginHandler,
    password_matches,
    with_gpuhub_pages,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def authenticator(monkeypatch):
    monkeypatch.setenv("GPUHUB_TEST_ADMIN_PASSWORD", PASSWORD)
    db = orm.new_session_factory("sqlite://")()
    return GPUHubAuthenticator(db=db, admin_users={"admin"}, admin_password_env="GPUHUB_TEST_ADMIN_PASSWORD")


def login(authenticator, username, password):
    return asyncio.run(authenticator.authenticate(None, {"username": username, "password": password}))


def test_an_approved_account_logs_in_with_its_password_only(authenticator):
    assert login(authenticator, "admin", PASSWORD) == "admin"
    assert login(authenticator, "Admin", PASSWORD) == "admin"  # names normalised as before
    assert login(authenticator, "admin", PASSWORD + "x") is None
    assert login(authenticator, "nobody", PASSWORD) is None


def test_an_account_not_yet_approved_is_refused_even_with_its_password(authenticator):
    authenticator.create_user("bob", "another long password")
    assert login(authenticator, "bob", "another long password") is None


def test_failed_attempts_block_the_account_as_nativeauthenticator_does(authenticator):
    authenticator.allowed_failed_logins = 2
    authenticator.seconds_before_next_try = 600
    for _ in range(2):
        assert login(authenticator, "admin", "wrong password here") is None
    assert login(authenticator, "admin", PASSWORD) is None  # blocked: the right password waits too


def test_the_event_loop_keeps_serving_while_a_password_is_checked():
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12))  # NativeAuthenticator's cost: ~0.3 s of CPU

    async def check_while_ticking():
        ticks = 0
        check = asyncio.ensure_future(password_matches(PASSWORD, stored))
        while not check.done():  # other requests of the hub, meanwhile
            ticks += 1
            await asyncio.sleep(0.005)
        return check.result(), ticks

    matches, ticks = asyncio.run(check_while_ticking())
    # on the loop the check would hold it for its whole length: not one tick in between
    assert matches is True and ticks >= 5, ticks
    assert asyncio.run(password_matches("not it", stored)) is False


def test_password_checks_run_behind_the_rest_of_the_hub_for_the_cpu():
    def niceness_here():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    hub_niceness = niceness_here()
    checks = [PASSWORD_CHECKS.submit(niceness_here) for _ in range(8)]
    assert {c.result() for c in checks} == {max(PASSWORD_CHECK_NICENESS, hub_niceness)}
    assert niceness_here() == hub_niceness  # the calling thread (the event loop's) keeps its own


def test_gpuhub_authenticator_serves_its_pages_and_its_own_login_page(authenticator):
    authenticator.gpuhub_handlers = [(r"/gpuhub/admin", object)]
    routes = dict((route, handler) for route, handler, *_ in authenticator.get_handlers(None))
    assert routes["/login"] is NativeLoginHandler  # without the statsd timer JupyterHub 6 removed
    assert "/signup" in routes and "/change-password" in routes  # NativeAuthenticator's other pages kept
    assert routes["/gpuhub/admin"] is object


@pytest.mark.parametrize(
    "named, base",
    [
        ("generic-oauth", "oauthenticator.generic.GenericOAuthenticator"),  # an entry-point name
        ("ldapauthenticator.LDAPAuthenticator", "ldapauthenticator.ldapauthenticator.LDAPAuthenticator"),  # an import path
        (DummyAuthenticator, "jupyterhub.auth.DummyAuthenticator"),  # a class (a drop-in file's choice)
    ],
)
def test_any_authenticator_a_site_names_serves_gpuhubs_pages(named, base):
    cls = with_gpuhub_pages(named)
    assert issubclass(cls, GPUHubPages) and f"{cls.__mro__[2].__module__}.{cls.__mro__[2].__name__}" == base
    authenticator = cls(gpuhub_handlers=[(r"/gpuhub/admin", object)])
    routes = [route for route, *_ in authenticator.get_handlers(None)]
    assert routes[-1] == "/gpuhub/admin" and len(routes) >= 1
    assert with_gpuhub_pages(cls) is cls and with_gpuhub_pages(GPUHubAuthenticator) is GPUHubAuthenticator


def test_an_unknown_authenticator_name_says_so():
    with pytest.raises(ImportError):
        with_gpuhub_pages("nosuchauthenticator")
