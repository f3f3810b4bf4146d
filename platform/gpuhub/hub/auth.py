"""The default authenticator: NativeAuthenticator (people sign up; an admin approves them), plus a
first admin created at the hub's first start, so a fresh deployment is never open and never locked;
and the way gpuhub's pages reach the hub whichever authenticator a site runs (``GPUHubPages``).

The first name in ``[hub] admin_users`` is created once, with the password in the environment
variable ``GPUHUB_ADMIN_PASSWORD``, or a generated one printed once in the hub log. Later starts
leave an existing account alone (change the password at ``/hub/change-password``).

A login's password check (bcrypt: about 0.28 s of CPU here) runs on a worker thread, not on the
hub's event loop: there, 50 logins at once held every other request of the hub for up to 13 s. The
worker threads run at a lower priority (nice 10) than the rest of the hub: while a class's passwords
are hashed the hub's CPU goes first to the requests that are not logins.

JupyterHub 6 removed ``BaseHandler.statsd``, which NativeAuthenticator 1.3.0 (its latest release)
still times every login with: there, every login answered 500. ``NativeLoginHandler`` is its login
page without that timer (and with the hash checked off the event loop); the rest of its pages work
unchanged. Drop it when NativeAuthenticator releases the fix.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points

import bcrypt
from jupyterhub.auth import Authenticator
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeAuthenticatorLoginHandler
from traitlets import List, Unicode, default
from traitlets.utils.importstring import import_item

PASSWORD_ENV = "GPUHUB_ADMIN_PASSWORD"
PASSWORD_CHECK_NICENESS = 10  # Linux's scheduler weighs a nice-10 thread about 1/10 of a nice-0 one


def lower_this_threads_priority(niceness: int = PASSWORD_CHECK_NICENESS) -> None:
    """Linux keeps a nice value per thread: this thread's (only) becomes ``niceness``. Raising one's
    own niceness needs no privilege; where it is refused the thread keeps the hub's priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(niceness, os.getpriority(os.PRIO_PROCESS, 0)))
    except OSError:
        pass


# bcrypt releases the GIL while it hashes: one thread per CPU checks that many passwords at once, each
# behind the event loop for the CPU
PASSWORD_CHECKS = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="gpuhub-password",
                                     initializer=lower_this_threads_priority)


async def password_matches(password: str, stored_hash: bytes) -> bool:
    """Whether ``password`` hashes to ``stored_hash`` (a bcrypt hash with its salt), checked on a worker thread."""
    return await asyncio.get_running_loop().run_in_executor(PASSWORD_CHECKS, bcrypt.checkpw, password.encode(), stored_hash)


class GPUHubPages(Authenticator):
    """Serves gpuhub's pages and REST API in the hub process, through ``Authenticator.get_handlers``.

    They must run in the hub (the wait lines and the allocation state live there; see
    docs/architecture.md), and ``get_handlers`` is the hook JupyterHub supports for handlers of its
    own process: ``JupyterHub.extra_handlers`` is deprecated. gpuhub's authenticators carry it;
    any other one a site names is given it by ``serve_gpuhub_pages``."""

    gpuhub_handlers = List(
        help="""gpuhub's routes (``gpuhub.web.routes.handlers``), set from the site settings by
        ``gpuhub.hub.hubconfig.serve_gpuhub_pages``; not a site setting.""",
    ).tag(config=True)

    def get_handlers(self, app):
        return [*super().get_handlers(app), *self.gpuhub_handlers]


def with_gpuhub_pages(authenticator_class) -> type:
    """``authenticator_class`` (a class, an entry-point name such as ``"generic-oauth"`` or an import
    path) with ``GPUHubPages`` mixed in; a class that has it already is returned as it is."""
    if isinstance(authenticator_class, str):
        points = {p.name.lower(): p for p in entry_points(group="jupyterhub.authenticators")}
        point = points.get(authenticator_class.lower())
        authenticator_class = point.load() if point else import_item(authenticator_class)
    if issubclass(authenticator_class, GPUHubPages):
        return authenticator_class
    return type(f"GPUHub{authenticator_class.__name__}", (GPUHubPages, authenticator_class), {})


class NativeLoginHandler(NativeAuthenticatorLoginHandler):
    """NativeAuthenticator's login page without the statsd timer JupyterHub 6 removed; a refused
    password's second check (for the "not authorised yet" message) also runs off the event loop."""

    async def post(self):
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        error = "Invalid username or password."
        username = data.get("username", "")
        account = self.authenticator.get_user(username)
        if account is not None and not account.is_authorized and await password_matches(data.get("password", ""), account.password):
            error = f"User {username} has not been authorized by an administrator yet."
        self.finish(await self._render(login_error=error, username=username))


class GPUHubAuthenticator(GPUHubPages, NativeAuthenticator):
    """NativeAuthenticator with safe defaults and a bootstrapped first admin."""

    admin_password_env = Unicode(
        PASSWORD_ENV,
        help="""Environment variable holding the first admin's password at the hub's first start.
        Empty or unset: a random password is generated and printed once in the hub log.""",
    ).tag(config=True)

    first_admin = Unicode(
        "",
        help="""The admin account created at the hub's first start. gpuhub sets it to the first name in
        ``[hub] admin_users``; empty means the alphabetically first of ``admin_users``.
        Example: ``"admin"``.""",
    ).tag(config=True)

    @default("db")
    def _hub_db_session(self):
        # NativeAuthenticator keeps its sign-ups in the hub's database through this shared session; it
        # is how that (kept) library works, not something the operator can change, so the session is
        # handed over without JupyterHub's notice to authenticator authors.
        return self._deprecated_db_session

    @default("allow_all")
    def _default_allow_all(self):
        # Authorisation is NativeAuthenticator's own: only accounts an admin approved can log in.
        return True

    @default("open_signup")
    def _default_open_signup(self):
        return False

    @default("minimum_password_length")
    def _default_minimum_password_length(self):
        return 10

    @default("check_common_password")
    def _default_check_common_password(self):
        return True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bootstrap_first_admin()

    def get_handlers(self, app):
        return [(route, NativeLoginHandler) if route == r"/login" else (route, *rest) for route, *rest in super().get_handlers(app)]

    async def authenticate(self, handler, data):
        """NativeAuthenticator's own check (an approved account, not blocked after failed attempts,
        the password, a second factor if the account has one), the password hashed off the event loop."""
        username = self.normalize_username(data["username"])
        user = self.get_user(username)
        if not user or (self.allowed_failed_logins and self.is_blocked(username)):
            return None
        checks = [user.is_authorized, await password_matches(data["password"], user.password)]
        if user.has_2fa:
            checks.append(user.is_valid_token(data.get("2fa")))
        if all(checks):
            self.successful_login(username)
            return username
        self.add_login_attempt(username)
        return None

    def bootstrap_first_admin(self) -> None:
        admins = sorted(self.admin_users)
        if not (self.first_admin or admins):
            self.log.warning("gpuhub: no admin_users configured; nobody can approve sign-ups")
            return
        name = self.normalize_username(self.first_admin or admins[0])
        if self.user_exists(name):
            return
        password = os.environ.get(self.admin_password_env, "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(15)
        if not self.is_password_strong(password):
            raise ValueError(
                f"gpuhub: {self.admin_password_env} must have at least {self.minimum_password_length}"
                " characters and not be a common password; the first admin was not created"
            )
        if self.create_user(name, password) is None:
            raise ValueError(f"gpuhub: could not create the first admin {name!r} (is the username valid?)")
        if generated:
            self.log.warning(
                "gpuhub: created the first admin %r with the generated password %s"
                " (shown once; change it at /hub/change-password)",
                name,
                password,
            )
        else:
            self.log.info("gpuhub: created the first admin %r with the password from %s", name, self.admin_password_env)
