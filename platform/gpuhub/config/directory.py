"""Institutional login: the ``[ldap]`` and ``[oidc]`` tables (``[hub] authenticator = "ldap"`` or
``"oidc"``). The directory's groups become JupyterHub groups at each login, so gpuhub's group quotas,
profiles and sessions follow the directory (``gpuhub.hub.directory``)."""

from __future__ import annotations

import re

from traitlets import Bool, Enum, Integer, List, Unicode, validate

from .sections import Section, SettingsError, optional_absolute_path

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GROUP_NAME = re.compile(r"^[^\s/][^/]{0,254}$")  # a JupyterHub group name: no slash (it is in URLs), not blank


def _url(value: str, schemes=("https",)) -> str:
    if value and not re.match(rf"^({'|'.join(schemes)})://[^/\s]+(/\S*)?$", value):
        raise ValueError(f"not a {' or '.join(s + '://' for s in schemes)} URL")
    return value


def _group_names(names: list[str]) -> list[str]:
    for name in names:
        if not _GROUP_NAME.match(name):
            raise ValueError(f"{name!r} is not a group name (no slash, not blank)")
    return names


def _env_name(value: str) -> str:
    if value and not _ENV_NAME.match(value):
        raise ValueError("not an environment variable name")
    return value


class Ldap(Section):
    section_help = """LDAP or Active Directory login (``[hub] authenticator = "ldap"``, through
    ldapauthenticator): a person logs in with their directory name and password; the groups the
    directory lists them in (``group_search_base``) become their JupyterHub groups at each login.
    The directory is asked on a worker thread with a ``timeout``: an unreachable directory makes
    the login page say so, and the hub keeps serving everyone already logged in."""

    server_address = Unicode(
        "",
        help="""The directory server's name or address. Example: ``"ldap.example.edu"``.""",
    ).tag(accepted="a host name or IP address")

    port = Integer(
        0,
        help="""Its port; ``0``: 636 with ``tls = "ldaps"``, else 389. Example: ``389``.""",
        min=0,
        max=65535,
    )

    tls = Enum(
        ["starttls", "ldaps", "insecure"],
        default_value="starttls",
        help="""How the connection is protected: ``"starttls"`` (default; StartTLS before the password
        is sent), ``"ldaps"`` (TLS from the first byte, port 636), ``"insecure"`` (none: passwords
        cross the network in clear; a directory on the same host or in tests only). Example: ``"ldaps"``.""",
    ).tag(accepted='"starttls", "ldaps" or "insecure"')

    ca_certificate = Unicode(
        "",
        help="""The directory's CA certificate (PEM) inside the hub container, when it is not a public
        one (mount it with a compose override file). Example: ``"/srv/gpuhub/ldap-ca.pem"``.""",
    ).tag(accepted="an absolute path")

    bind_dn_templates = List(
        Unicode(),
        help="""Where people's entries are: the DN to bind with, ``{username}`` replaced by the login
        name (escaped); each is tried in turn. Example:
        ``["uid={username},ou=people,dc=example,dc=edu"]``; Active Directory: ``["{username}@example.edu"]``
        or ``lookup_dn``.""",
    ).tag(accepted='DN templates containing "{username}"')

    lookup_dn = Bool(
        False,
        help="""Find a person's DN by searching (``user_search_base``, ``user_attribute``) as
        ``search_user`` first (Active Directory with ``sAMAccountName``). Example: ``true``.""",
    ).tag(accepted="true or false")

    user_search_base = Unicode(
        "",
        help="""``lookup_dn``: where people's entries are searched. Example: ``"ou=people,dc=example,dc=edu"``.""",
    ).tag(accepted="a DN")

    user_attribute = Unicode(
        "uid",
        help="""``lookup_dn``: the attribute holding the login name. Example: ``"sAMAccountName"``.""",
    ).tag(accepted="an attribute name")

    search_user = Unicode(
        "",
        help="""``lookup_dn``: the DN the search binds as. Example: ``"cn=jupyterhub,ou=services,dc=example,dc=edu"``.""",
    ).tag(accepted="a DN")

    search_password_env = Unicode(
        "GPUHUB_LDAP_SEARCH_PASSWORD",
        help="""``lookup_dn``: the environment variable (of the hub container) holding ``search_user``'s
        password; never in this file. Example: ``"GPUHUB_LDAP_SEARCH_PASSWORD"``.""",
    ).tag(accepted="an environment variable name")

    group_search_base = Unicode(
        "",
        help="""Where groups are searched; empty: the directory's groups are not read (nobody gets a
        group from it). Example: ``"ou=groups,dc=example,dc=edu"``.""",
    ).tag(accepted="a DN")

    group_filter = Unicode(
        "(|(member={userdn})(uniqueMember={userdn})(memberUid={username}))",
        help="""The search for a person's groups; ``{userdn}`` and ``{username}`` are replaced
        (escaped). The default finds ``groupOfNames``, ``groupOfUniqueNames`` and ``posixGroup``
        membership. Example: ``"(member={userdn})"``.""",
    ).tag(accepted="an LDAP filter")

    group_name_attribute = Unicode(
        "cn",
        help="""The group attribute that becomes the JupyterHub group's name. Example: ``"cn"``.""",
    ).tag(accepted="an attribute name")

    allowed_groups = List(
        Unicode(),
        help="""Only members of one of these groups (by name) may log in; empty: anyone the directory
        accepts. Example: ``["ml-lab", "students"]``.""",
    ).tag(accepted="a list of group names")

    admin_groups = List(
        Unicode(),
        help="""Members of these groups are JupyterHub admins (checked at each login). Example: ``["hub-admins"]``.""",
    ).tag(accepted="a list of group names")

    timeout = Integer(
        10,
        help="""Seconds a login waits for the directory before the login page says it cannot be
        reached. Example: ``10``.""",
        min=1,
        max=120,
    )

    @validate("bind_dn_templates")
    def _validate_templates(self, proposal):
        for template in proposal["value"]:
            if "{username}" not in template:
                raise ValueError(f"{template!r} has no {{username}}")
        return proposal["value"]

    @validate("allowed_groups", "admin_groups")
    def _validate_groups(self, proposal):
        return _group_names(proposal["value"])

    @validate("search_password_env")
    def _validate_env(self, proposal):
        return _env_name(proposal["value"])

    @validate("ca_certificate")
    def _validate_ca(self, proposal):
        return optional_absolute_path(proposal["value"])

    def check(self, root, where: str) -> None:
        if root.hub.authenticator != "ldap":
            return
        if not self.server_address:
            raise SettingsError(
                f'{where}.server_address: [hub] authenticator = "ldap" needs the directory server. Accepted: a host name or IP address',
                f"{where}.server_address",
            )
        if not self.bind_dn_templates and not self.lookup_dn:
            raise SettingsError(
                f"{where}.bind_dn_templates: needed to find people's entries (or lookup_dn = true). Accepted: "
                'DN templates containing "{username}", e.g. ["uid={username},ou=people,dc=example,dc=edu"]', f"{where}.bind_dn_templates",
            )
        if self.lookup_dn and not (self.user_search_base and self.search_user):
            raise SettingsError(f"{where}.user_search_base: lookup_dn needs user_search_base and search_user. Accepted: DNs", f"{where}.user_search_base")


class Oidc(Section):
    section_help = """OpenID Connect login (``[hub] authenticator = "oidc"``, through OAuthenticator's
    GenericOAuthenticator): Keycloak, Azure AD/Entra ID, Okta, Google, a university's SSO. The
    provider's groups claim becomes the person's JupyterHub groups at each login. Register the hub
    at the provider with the redirect URL ``https://<the hub>/hub/oauth_callback``. The endpoints are
    in the provider's ``<issuer>/.well-known/openid-configuration``."""

    authorize_url = Unicode("", help="""The provider's authorization endpoint. Example:
        ``"https://login.example.edu/realms/uni/protocol/openid-connect/auth"``.""").tag(accepted="an https:// URL")
    token_url = Unicode("", help="""The provider's token endpoint. Example:
        ``"https://login.example.edu/realms/uni/protocol/openid-connect/token"``.""").tag(accepted="an https:// URL")
    userinfo_url = Unicode("", help="""The provider's userinfo endpoint. Example:
        ``"https://login.example.edu/realms/uni/protocol/openid-connect/userinfo"``.""").tag(accepted="an https:// URL")

    client_id = Unicode("", help="""The hub's client id at the provider. Example: ``"gpuhub"``.""").tag(accepted="a string")

    client_secret_env = Unicode(
        "GPUHUB_OIDC_CLIENT_SECRET",
        help="""The environment variable (of the hub container) holding the client secret; never in
        this file. Example: ``"GPUHUB_OIDC_CLIENT_SECRET"``.""",
    ).tag(accepted="an environment variable name")

    scopes = List(Unicode(), default_value=["openid", "profile", "email"],
                  help="""The scopes asked for. Example: ``["openid", "profile", "email", "groups"]``.""").tag(accepted="a list of scope names")

    username_claim = Unicode("preferred_username", help="""The userinfo claim that becomes the JupyterHub
        user name. Example: ``"email"``.""").tag(accepted="a claim name")

    groups_claim = Unicode("groups", help="""The userinfo claim listing the person's groups (dots reach
        into nested claims: ``"realm_access.roles"``); empty: no groups from the provider. Example:
        ``"groups"``.""").tag(accepted="a claim name")

    allowed_groups = List(Unicode(), help="""Only members of one of these groups may log in; empty: anyone
        the provider authenticates. Example: ``["ml-lab"]``.""").tag(accepted="a list of group names")

    admin_groups = List(Unicode(), help="""Members of these groups are JupyterHub admins. Example:
        ``["hub-admins"]``.""").tag(accepted="a list of group names")

    provider_name = Unicode("your institution", help="""The provider as the login button names it ("Sign in
        with ..."). Example: ``"UniSSO"``.""").tag(accepted="a string")

    allow_http = Bool(False, help="""Accept ``http://`` endpoint URLs (a provider on the same host or in
        tests only: tokens would cross the network in clear). Example: ``false``.""").tag(accepted="true or false")

    @validate("authorize_url", "token_url", "userinfo_url")
    def _validate_urls(self, proposal):
        return _url(proposal["value"], ("https", "http"))

    @validate("allowed_groups", "admin_groups")
    def _validate_groups(self, proposal):
        return _group_names(proposal["value"])

    @validate("client_secret_env")
    def _validate_env(self, proposal):
        return _env_name(proposal["value"])

    def check(self, root, where: str) -> None:
        if root.hub.authenticator != "oidc":
            return
        for key in ("authorize_url", "token_url", "userinfo_url", "client_id"):
            if not getattr(self, key):
                raise SettingsError(
                    f'{where}.{key}: [hub] authenticator = "oidc" needs it. Accepted: {self.class_traits()[key].metadata["accepted"]}'
                    " (the endpoints are in the provider's .well-known/openid-configuration)", f"{where}.{key}",
                )
        for key in ("authorize_url", "token_url", "userinfo_url"):
            if getattr(self, key).startswith("http://") and not self.allow_http:
                raise SettingsError(f"{where}.{key}: an http:// endpoint sends tokens in clear. Accepted: an https:// URL"
                                    " (or allow_http = true for a provider on this host)", f"{where}.{key}")
