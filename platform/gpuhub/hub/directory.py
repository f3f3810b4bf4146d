"""Institutional login: LDAP / Active Directory (ldapauthenticator) and OpenID Connect (OAuthenticator's
GenericOAuthenticator), with the directory's groups as JupyterHub groups (``[ldap]``, ``[oidc]``).

At each login the person's groups become: the groups the directory lists now, plus the groups the
directory does not own (a session's course group, a group an admin made). A group the directory
listed once is marked as its own (the group property ``gpuhub.directory``), so someone the directory
no longer lists in ``ml-lab`` leaves ``ml-lab`` at their next login, and a course group is never
touched. JupyterHub's ``manage_groups`` alone would replace all of a person's groups with the
directory's, course groups included.

ldapauthenticator asks the directory with blocking calls inside its coroutine: here it runs on a
worker thread with a time limit, so a slow or unreachable directory holds one login (which says so,
503), not the hub.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from jupyterhub import orm
from ldap3 import SUBTREE
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldapauthenticator import LDAPAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Integer, List, Unicode, default

from .auth import GPUHubPages

DIRECTORY_PROPERTY = "gpuhub.directory"  # a group property: "ldap" or "oidc", the group is the directory's
_DIRECTORY_CALLS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gpuhub-ldap")


def merged_groups(current: dict[str, bool], directory: set[str]) -> list[str]:
    """A person's groups after a login: ``directory`` (what the directory lists now) and, of their
    ``current`` groups (name → whether the directory owns it), those the directory does not own."""
    return sorted(directory | {name for name, owned in current.items() if not owned})


class DirectoryGroups(GPUHubPages):
    """The directory's groups as the person's JupyterHub groups, merged with the groups it does not
    own (``merged_groups``), after the authenticator's own checks (``check_allowed`` sees only the
    directory's groups)."""

    directory_name = "directory"

    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    async def get_authenticated_user(self, handler, data):
        model = await super().get_authenticated_user(handler, data)
        if model:
            model["groups"] = self.merge_into_hub(handler.db, model["name"], set(model.get("groups") or ()))
            self.log.info("gpuhub %s: logged in through %s, groups %s", model["name"], self.directory_name, ",".join(model["groups"]) or "none")
        return model

    def merge_into_hub(self, db, username: str, directory: set[str]) -> list[str]:
        """Mark ``directory``'s groups as the directory's (creating them), and the person's groups after
        this login; JupyterHub then sets them (``manage_groups``)."""
        for name in directory:
            group = orm.Group.find(db, name) or orm.Group(name=name)
            if not (group.properties or {}).get(DIRECTORY_PROPERTY):
                group.properties = {**(group.properties or {}), DIRECTORY_PROPERTY: self.directory_name}
                db.add(group)
        db.commit()
        user = orm.User.find(db, username)
        current = {g.name: bool((g.properties or {}).get(DIRECTORY_PROPERTY)) for g in (user.groups if user else ())}
        return merged_groups(current, directory)


class GPUHubLDAPAuthenticator(DirectoryGroups, LDAPAuthenticator):
    """ldapauthenticator's login (its binds, escaping and search filter), on a worker thread with a time
    limit, plus the person's groups read from ``group_search_base``."""

    directory_name = "ldap"

    group_search_base = Unicode("", help="Where groups are searched (``[ldap] group_search_base``); empty: none read.").tag(config=True)
    member_filter = Unicode(
        "(|(member={userdn})(uniqueMember={userdn})(memberUid={username}))",
        help="The search for a person's groups, ``{userdn}`` and ``{username}`` replaced (escaped).",
    ).tag(config=True)
    group_name_attribute = Unicode("cn", help="The group attribute that names the JupyterHub group.").tag(config=True)
    allowed_group_names = List(Unicode(), help="Only members of these groups (names) may log in; empty: anyone.").tag(config=True)
    admin_group_names = List(Unicode(), help="Members of these groups (names) are admins.").tag(config=True)
    directory_timeout = Integer(10, help="Seconds a login waits for the directory.").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._bound = threading.local()

    async def authenticate(self, handler, data):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(_DIRECTORY_CALLS, self._authenticate_blocking, data), self.directory_timeout)
        except (asyncio.TimeoutError, LDAPException) as e:
            self.log.warning("gpuhub %s: login refused, the directory %s:%s did not answer: %s",
                             data.get("username", "?"), self.server_address, self.server_port, str(e) or "timed out")
            raise web.HTTPError(503, "The directory cannot be reached right now, so logins fail: try again in a few"
                                     " minutes. People already logged in are not affected.") from None

    def _authenticate_blocking(self, data):
        self._bound.conn = None
        model = asyncio.run(LDAPAuthenticator.authenticate(self, None, data))  # its synchronous checks, here
        conn = self._bound.conn
        try:
            if model and conn is not None:
                groups = self._groups_of(conn, model["name"])
                model["groups"] = sorted(groups)
                if self.admin_group_names:
                    model["admin"] = model["name"] in self.admin_users or bool(groups & set(self.admin_group_names))
            return model
        finally:
            if conn is not None:
                conn.unbind()

    def get_connection(self, userdn, password):
        conn = super().get_connection(userdn, password)
        if conn is not None:
            self._bound.conn = conn  # the last bind of a login is the person's own
        return conn

    def _groups_of(self, conn, username: str) -> set[str]:
        if not self.group_search_base:
            return set()
        query = self.member_filter.format(userdn=escape_filter_chars(conn.user), username=escape_filter_chars(username))
        conn.search(self.group_search_base, query, search_scope=SUBTREE, attributes=[self.group_name_attribute])
        return {str(value) for entry in conn.entries for value in entry[self.group_name_attribute].values}

    async def check_allowed(self, username, auth_model):
        if self.allowed_group_names:
            groups = set((auth_model or {}).get("groups") or ())
            return username in self.allowed_users or bool(groups & set(self.allowed_group_names))
        return await super().check_allowed(username, auth_model)


class GPUHubOIDCAuthenticator(DirectoryGroups, GenericOAuthenticator):
    """OAuthenticator's GenericOAuthenticator (the OAuth 2 code flow, state and token checks; groups from
    a userinfo claim with ``manage_groups``), with the merge of the groups it does not own."""

    directory_name = "oidc"


def apply_login(c, settings) -> None:
    """``[hub] authenticator = "ldap"`` or ``"oidc"``: gpuhub's authenticator for it, set from ``[ldap]``
    or ``[oidc]``. A secret named by its environment variable must be there: else the hub stops here
    with the variable's name."""
    kind = settings.hub.authenticator
    if kind == "ldap":
        ldap, a = settings.ldap, c.GPUHubLDAPAuthenticator
        c.JupyterHub.authenticator_class = GPUHubLDAPAuthenticator
        a.server_address = ldap.server_address
        if ldap.port:
            a.server_port = ldap.port
        a.tls_strategy = {"starttls": "before_bind", "ldaps": "on_connect", "insecure": "insecure"}[ldap.tls]
        if ldap.ca_certificate:
            a.tls_kwargs = {"ca_certs_file": ldap.ca_certificate}
        a.bind_dn_template = list(ldap.bind_dn_templates)
        if ldap.lookup_dn:
            a.lookup_dn, a.user_search_base, a.user_attribute = True, ldap.user_search_base, ldap.user_attribute
            a.lookup_dn_search_user, a.lookup_dn_search_password = ldap.search_user, _secret(ldap.search_password_env, "ldap.search_password_env")
        a.group_search_base, a.member_filter, a.group_name_attribute = ldap.group_search_base, ldap.group_filter, ldap.group_name_attribute
        a.allowed_group_names, a.admin_group_names = list(ldap.allowed_groups), list(ldap.admin_groups)
        a.allow_all = not ldap.allowed_groups  # anyone the directory accepts, unless groups are listed
        a.directory_timeout = ldap.timeout
    elif kind == "oidc":
        oidc, a = settings.oidc, c.GPUHubOIDCAuthenticator
        c.JupyterHub.authenticator_class = GPUHubOIDCAuthenticator
        a.authorize_url, a.token_url, a.userdata_url = oidc.authorize_url, oidc.token_url, oidc.userinfo_url
        a.client_id, a.client_secret = oidc.client_id, _secret(oidc.client_secret_env, "oidc.client_secret_env")
        a.scope, a.username_claim = list(oidc.scopes), oidc.username_claim
        a.login_service = oidc.provider_name
        if oidc.groups_claim:
            a.auth_state_groups_key = f"oauth_user.{oidc.groups_claim}"
        a.allowed_groups, a.admin_groups = set(oidc.allowed_groups), set(oidc.admin_groups)
        a.allow_all = not oidc.allowed_groups


def _secret(variable: str, key: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise SystemExit(f"gpuhub: the hub does not start: {key} names the environment variable {variable}, which is"
                         " not set in the hub's environment (docker-compose.yml passes it from yours)")
    return value
