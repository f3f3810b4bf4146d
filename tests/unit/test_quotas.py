"""Quota resolution user > group > default (database over settings at each level), and the check of
one request against what the user already holds, as tables."""

import pytest

from gpuhub.quotas import Held, QuotaRule, refusal, resolve

S, D = "settings", "database"
RULES = [
    QuotaRule("default", "", max_gpus=1, max_shared_slices=1, origin=S),
    QuotaRule("group", "ml-lab", max_gpus=2, profiles=("cpu", "gpu-1"), origin=S),
    QuotaRule("group", "vision", max_gpus=4, max_shared_slices=0, profiles=("gpu-4",), origin=S),
    QuotaRule("group", "vision", max_gpus=3, origin=D),  # the database overrides the file for vision
    QuotaRule("user", "alice", max_gpus=8, origin=S),
    QuotaRule("user", "alice", max_gpus=6, origin=D),
    QuotaRule("user", "bob", profiles=("cpu",), origin=S),
]

RESOLUTION = [
    # (user, groups, field, value, source)
    ("nobody", [], "max_gpus", 1, "the default (settings)"),
    ("nobody", [], "profiles", None, "no limit set"),
    ("carol", ["ml-lab"], "max_gpus", 2, "group ml-lab (settings)"),
    ("carol", ["ml-lab"], "max_shared_slices", 1, "the default (settings)"),
    ("dave", ["vision"], "max_gpus", 3, "group vision (database)"),
    ("dave", ["vision"], "max_shared_slices", 0, "group vision (settings)"),
    ("erin", ["ml-lab", "vision"], "max_gpus", 3, "group vision (database)"),  # the most generous group
    ("erin", ["ml-lab", "vision"], "profiles", ("cpu", "gpu-1", "gpu-4"), "group ml-lab (settings) + group vision (settings)"),
    ("alice", ["ml-lab"], "max_gpus", 6, "user alice (database)"),
    ("alice", ["ml-lab"], "profiles", ("cpu", "gpu-1"), "group ml-lab (settings)"),
    ("bob", ["vision"], "profiles", ("cpu",), "user bob (settings)"),
    ("bob", ["vision"], "max_gpus", 3, "group vision (database)"),
]


@pytest.mark.parametrize("user, groups, field, value, source", RESOLUTION)
def test_resolution(user, groups, field, value, source):
    limit = getattr(resolve(user, groups, RULES), field)
    assert (limit.value, limit.source) == (value, source)


def test_no_rules_means_no_limits():
    q = resolve("x", ["g"], [])
    assert q.max_gpus.value is None and q.allows_profile("anything")


EX, SH, MIG = "exclusive", "shared", "mig"
CHECKS = [
    # (user, groups, held, profile, mode, count, None | fragments of the refusal)
    ("nobody", [], [], "gpu-1", EX, 1, None),
    ("nobody", [], [Held(EX, 1)], "gpu-1", EX, 1, ["max_gpus = 1 (set by the default (settings))", "You hold 1 GPU(s)"]),
    ("nobody", [], [], "gpu-2", EX, 2, ["max_gpus = 1", "asks for 2 more"]),
    ("nobody", [], [Held(SH, 1)], "gpu-1", EX, 1, None),  # slices do not count as whole GPUs
    ("nobody", [], [Held(SH, 1)], "mig", MIG, 1, ["max_shared_slices = 1", "shared or MIG slice(s)"]),
    ("nobody", [], [Held(EX, 1)], "cpu", "none", 0, None),  # CPU profiles are never GPU-limited
    ("carol", ["ml-lab"], [Held(EX, 1)], "gpu-1", EX, 1, None),
    ("carol", ["ml-lab"], [], "gpu-4", EX, 4, ["Profile 'gpu-4' is not in your allowed profiles (cpu, gpu-1"]),
    ("dave", ["vision"], [], "gpu-4", SH, 1, ["max_shared_slices = 0 (set by group vision (settings))"]),
    ("alice", [], [Held(EX, 4)], "gpu-2", EX, 2, None),
    ("alice", [], [Held(EX, 4), Held(EX, 1)], "gpu-2", EX, 2, ["max_gpus = 6 (set by user alice (database))"]),
]


@pytest.mark.parametrize("user, groups, held, profile, mode, count, fragments", CHECKS)
def test_refusal(user, groups, held, profile, mode, count, fragments):
    message = refusal(resolve(user, groups, RULES), held, profile, mode, count)
    if fragments is None:
        assert message is None
    else:
        for fragment in fragments:
            assert fragment in message, message


def test_bad_scope_is_refused():
    with pytest.raises(ValueError, match="scope 'team'"):
        QuotaRule("team", "x")
