"""Institutional login's policy and config: which groups a person has after a login (a table), the
``[ldap]`` / ``[oidc]`` tables' rules, and the hub config they become. The logins themselves run
against a real slapd (integration tier) and a real OIDC provider in Chromium (e2e tier)."""

import pytest
from jupyterhub import orm
from traitlets.config import Config

from gpuhub.config.schema import parse_settings
from gpuhub.config.sections import SettingsError
from gpuhub.hub.directory import DIRECTORY_PROPERTY, GPUHubLDAPAuthenticator, GPUHubOIDCAuthenticator, apply_login, merged_groups
from tests.conftest import BASE_SETTINGS

LDAP = '''[hub]
authenticator = "ldap"
[ldap]
server_address = "ldap.example.edu"
bind_dn_templates = ["uid={username},ou=people,dc=example,dc=edu"]
group_search_base = "ou=groups,dc=example,dc=edu"
'''
OIDC = '''[hub]
authenticator = "oidc"
[oidc]
authorize_url = "https://sso.example.edu/auth"
token_url = "https://sso.example.edu/token"
userinfo_url = "https://sso.example.edu/userinfo"
client_id = "gpuhub"
'''


@pytest.mark.parametrize(
    "current, directory, after",
    [
        ({}, {"ml-lab"}, ["ml-lab"]),  # a first login
        ({"ml-lab": True, "course-dl101": False}, {"staff"}, ["course-dl101", "staff"]),  # left ml-lab; the course kept
        ({"ml-lab": True}, {"ml-lab"}, ["ml-lab"]),  # nothing changed
        ({"course-dl101": False, "admins-made": False}, set(), ["admins-made", "course-dl101"]),  # no directory group
        ({"ml-lab": False}, {"ml-lab"}, ["ml-lab"]),  # a hub group the directory now lists
        ({"ml-lab": True, "students": True}, set(), []),  # the directory lists none any more
    ],
)
def test_a_login_keeps_the_groups_the_directory_does_not_own(current, directory, after):
    assert merged_groups(current, directory) == after


def test_directory_groups_are_marked_in_the_hub_database():
    db = orm.new_session_factory("sqlite://")()
    db.add(orm.Group(name="course-dl101", properties={"note": "made by a session"}))
    alice = orm.User(name="alice")
    alice.groups.append(orm.Group.find(db, "course-dl101"))
    db.add(alice)
    db.commit()
    authenticator = GPUHubLDAPAuthenticator(server_address="x", bind_dn_template=["uid={username}"])
    assert authenticator.merge_into_hub(db, "alice", {"ml-lab"}) == ["course-dl101", "ml-lab"]
    assert orm.Group.find(db, "ml-lab").properties == {DIRECTORY_PROPERTY: "ldap"}
    assert orm.Group.find(db, "course-dl101").properties == {"note": "made by a session"}
    assert authenticator.manage_groups is True  # JupyterHub then sets exactly these
    assert authenticator.merge_into_hub(db, "nobody-yet", {"staff"}) == ["staff"]


def test_ldap_settings_become_the_authenticators_config(monkeypatch):
    settings = parse_settings(LDAP + 'tls = "ldaps"\nallowed_groups = ["ml-lab"]\nadmin_groups = ["hub-admins"]\ntimeout = 5\n' + BASE_SETTINGS)
    c = Config()
    apply_login(c, settings)
    assert c.JupyterHub.authenticator_class is GPUHubLDAPAuthenticator
    a = c.GPUHubLDAPAuthenticator
    assert a.server_address == "ldap.example.edu" and a.tls_strategy == "on_connect" and "server_port" not in a
    assert a.bind_dn_template == ["uid={username},ou=people,dc=example,dc=edu"]
    assert a.allowed_group_names == ["ml-lab"] and a.allow_all is False and a.admin_group_names == ["hub-admins"]
    assert a.directory_timeout == 5 and a.group_search_base == "ou=groups,dc=example,dc=edu"
    authenticator = GPUHubLDAPAuthenticator(config=c)  # ldapauthenticator accepts it as configured
    assert authenticator.tls_strategy.name == "on_connect" and authenticator.server_port == 636


def test_oidc_settings_become_the_authenticators_config(monkeypatch):
    monkeypatch.setenv("GPUHUB_OIDC_CLIENT_SECRET", "s3cret")
    settings = parse_settings(OIDC + 'groups_claim = "realm_access.roles"\nadmin_groups = ["hub-admins"]\n' + BASE_SETTINGS)
    c = Config()
    apply_login(c, settings)
    authenticator = GPUHubOIDCAuthenticator(config=c)
    assert authenticator.client_secret == "s3cret" and authenticator.userdata_url == "https://sso.example.edu/userinfo"
    assert authenticator.manage_groups is True and authenticator.admin_groups == {"hub-admins"}
    assert authenticator.auth_state_groups_key == "oauth_user.realm_access.roles"
    assert authenticator.allow_all is True and authenticator.scope == ["openid", "profile", "email"]


def test_a_secret_missing_from_the_environment_stops_the_hub_naming_it(monkeypatch):
    monkeypatch.delenv("GPUHUB_OIDC_CLIENT_SECRET", raising=False)
    with pytest.raises(SystemExit) as e:
        apply_login(Config(), parse_settings(OIDC + BASE_SETTINGS))
    assert "oidc.client_secret_env names the environment variable GPUHUB_OIDC_CLIENT_SECRET" in str(e.value)


@pytest.mark.parametrize(
    "text, key, message",
    [
        ('[hub]\nauthenticator = "ldap"\n', "ldap.server_address", 'authenticator = "ldap" needs the directory server'),
        ('[hub]\nauthenticator = "ldap"\n[ldap]\nserver_address = "x"\n', "ldap.bind_dn_templates", "or lookup_dn = true"),
        (LDAP + "lookup_dn = true\n", "ldap.user_search_base", "lookup_dn needs user_search_base and search_user"),
        (LDAP.replace("uid={username},", "uid=fixed,"), "ldap.bind_dn_templates", "has no {username}"),
        (LDAP + 'tls = "ssl"\n', "ldap.tls", 'Accepted: "starttls", "ldaps" or "insecure"'),
        (LDAP + 'allowed_groups = ["a/b"]\n', "ldap.allowed_groups", "is not a group name"),
        (LDAP + 'search_password_env = "not a name"\n', "ldap.search_password_env", "not an environment variable name"),
        (LDAP + "port = 70000\n", "ldap.port", "outside 0 to 65535"),
        ('[hub]\nauthenticator = "oidc"\n', "oidc.authorize_url", "needs it"),
        (OIDC.replace("https://sso.example.edu/token", "http://sso.example.edu/token"), "oidc.token_url", "sends tokens in clear"),
        (OIDC.replace("https://sso.example.edu/auth", "ftp://x/auth"), "oidc.authorize_url", "not a https:// or http:// URL"),
        (OIDC + "scopes = [1]\n", "oidc.scopes", "is not accepted"),
    ],
)
def test_bad_directory_settings_are_refused_naming_the_key(text, key, message):
    with pytest.raises(SettingsError) as e:
        parse_settings(text + BASE_SETTINGS)
    assert e.value.key == key and message in str(e.value), str(e.value)


def test_directory_tables_are_ignored_by_the_native_authenticator():
    # a site may keep an [ldap] table while it still runs the native authenticator
    settings = parse_settings('[ldap]\nserver_address = "ldap.example.edu"\n' + BASE_SETTINGS)
    c = Config()
    apply_login(c, settings)
    assert "authenticator_class" not in c.JupyterHub
