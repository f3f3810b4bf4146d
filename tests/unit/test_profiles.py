"""Which profile a spawn request means, for the form and the REST API alike."""

import pytest

from gpuhub.policy.errors import SpawnRefused
from gpuhub.policy.profiles import choose_profile, profiles_for, session_name
from gpuhub.config.schema import parse_settings
from tests.conftest import BASE_SETTINGS


@pytest.fixture
def settings():
    return parse_settings(BASE_SETTINGS)


@pytest.mark.parametrize(
    "groups, expected",
    [([], ["cpu-small", "gpu-1"]), (["ml-lab"], ["cpu-small", "cpu-data", "gpu-1"]), (["other"], ["cpu-small", "gpu-1"])],
)
def test_profiles_for_groups(settings, groups, expected):
    assert [p.name for p in profiles_for(settings, groups)] == expected


CHOICES = [
    # (user_options, groups, profile name)
    ({}, [], "cpu-small"),  # no default open to them: the first they may use
    ({}, ["ml-lab"], "cpu-data"),  # the default
    ({"profile": ""}, ["ml-lab"], "cpu-data"),
    ({"profile": "cpu-small"}, ["ml-lab"], "cpu-small"),
    ({"profile": "cpu-data"}, ["ml-lab"], "cpu-data"),
    ({"profile": "cpu-small", "image": "example/other:1"}, [], "cpu-small"),  # image checked by the spawner
    ({"profile": "gpu-1"}, [], "gpu-1"),  # GPUs and quotas are the allocator's business
]


@pytest.mark.parametrize("options, groups, name", CHOICES)
def test_choice(settings, options, groups, name):
    assert choose_profile(settings, options, groups).name == name


REFUSALS = [
    # (user_options, groups, status, why, fragments)
    ({"profile": "nope"}, [], 400, "profile", ["No such profile: 'nope'", "Options include: cpu-small, gpu-1"]),
    ({"profile": "cpu-data"}, [], 403, "forbidden", ["limited to the groups ml-lab", "open to you: cpu-small, gpu-1"]),
    ({"profile": 7}, [], 400, "options", ["profile must be a profile name"]),
    ({"profile": ["cpu-small"]}, [], 400, "options", ["profile must be a profile name"]),
    ({"mem_limit": "64G"}, [], 400, "options", ["Unknown spawn option(s): 'mem_limit'", "Accepted: profile, image"]),
    ({"profile": "cpu-small", "image": 3}, [], 400, "options", ["image must be an image reference"]),
    ("cpu-small", [], 400, "options", ["user_options must be an object"]),
    ([], [], 400, "options", ["user_options must be an object"]),  # falsy, and still not the default profile
    (0, [], 400, "options", ["user_options must be an object"]),
]


@pytest.mark.parametrize("options, name", [
    ({}, None), ([1, 2], None), ({"session": "ml101"}, "ml101"), ({"profile": "x"}, None),
])
def test_session_name(options, name):
    assert session_name(options) == name


@pytest.mark.parametrize("value", ["", "ML101", "a/b", "\ud800", "x" * 64, 7, ["ml101"], "ml 101"])
def test_a_session_name_that_cannot_be_one_is_refused(value):
    with pytest.raises(SpawnRefused) as e:
        session_name({"session": value})
    assert (e.value.status_code, e.value.why) == (400, "options") and "is not a session name" in e.value.message


@pytest.mark.parametrize("options, groups, status, why, fragments", REFUSALS)
def test_refusal(settings, options, groups, status, why, fragments):
    with pytest.raises(SpawnRefused) as e:
        choose_profile(settings, options, groups)
    assert (e.value.status_code, e.value.why) == (status, why)
    for fragment in fragments:
        assert fragment in e.value.message


def test_nobody_may_use_any_profile():
    s = parse_settings(BASE_SETTINGS.replace('name = "cpu-small"', 'name = "cpu-small"\ngroups = ["x"]').replace(
        'name = "gpu-1"', 'name = "gpu-1"\ngroups = ["x"]'))
    with pytest.raises(SpawnRefused) as e:
        choose_profile(s, {}, [])
    assert e.value.status_code == 403
