"""Volume and container names from hostile usernames: always Docker-valid, never shared."""

import re

import pytest

from gpuhub.policy.slugs import render_name, user_slug

DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

HOSTILE = [
    "alice",
    "Alice",
    "ALICE",
    "alice.smith",
    "alice-smith",
    "alice_smith",
    "alice smith",
    "alice%2Esmith",
    "alice-2esmith",
    "../../etc/passwd",
    "élodie",
    "elodie",
    "Élodie",
    "用户",
    "用戶",
    "🚀",
    "a" * 200,
    "a" * 199 + "b",
    "-leading-dash",
    ".",
    "..",
    "x" * 32 + "!" + "y",
    "x" * 32 + "?" + "y",
    "name\u0000null",
    "tab\tname",
    "{slug}",
    "bob@example.org",
    "bob_at_example.org",
]


@pytest.mark.parametrize("username", HOSTILE)
def test_slug_is_a_valid_docker_name(username):
    slug = user_slug(username)
    assert DOCKER_NAME.match(slug), slug
    assert len(slug) <= 32 + 1 + 16
    name = render_name("gpuhub-home-{slug}", username)
    assert DOCKER_NAME.match(name) and name.startswith("gpuhub-home-")


def test_no_two_usernames_share_a_slug():
    slugs = [user_slug(u) for u in HOSTILE]
    assert len(set(slugs)) == len(HOSTILE)


@pytest.mark.parametrize(
    "username, readable",
    [("alice", "alice"), ("Alice.Smith", "alice-smith"), ("élodie", "lodie"), ("用户", "user"), ("a" * 200, "a" * 32)],
)
def test_slug_keeps_a_readable_part(username, readable):
    assert user_slug(username).rsplit("-", 1)[0] == readable


def test_slug_is_stable():
    assert user_slug("alice") == user_slug("alice")
    assert user_slug("alice") != user_slug("alice ")
