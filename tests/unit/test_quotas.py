"""Quota resolution user > group > default (database over settings at each level), and the check of
one request against what the user already holds, as tables."""

import pytest

from gpuhub.policy.quotas import Ask, Held, QuotaRule, WeekUsed, refusal, resolve

S, D = "settings", "database"
RULES = [
    QuotaRule("default", "", max_gpus=1, max_shared_slices=1, origin=S),
    QuotaRule("group", "ml-lab", max_gpus=2, profiles=("cpu", "gpu-1"), origin=S),
    QuotaRule("group", "vision", max_gpus=4, max_shared_slices=0, profiles=("gpu-4",), origin=S),
    QuotaRule("group", "vision", max_gpus=3, origin=D),  # the database overrides the file for vision
    QuotaRule("user", "alice", max_gpus=8, origin=S),
    QuotaRule("user", "alice", max_gpus=6, origin=D),
    QuotaRule("user", "bob", profiles=("cpu",), origin=S),
    QuotaRule("group", "course", gpu_hours_per_week=10, max_memory=8 * 1024**3, max_cpus=4, origin=D),
    QuotaRule("group", "staff", gpu_hours_per_week=40, origin=S),
    QuotaRule("user", "frank", gpu_hours_per_week=0, origin=D),
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
    ("gina", ["course"], "gpu_hours_per_week", 10, "group course (database)"),
    ("gina", ["course", "staff"], "gpu_hours_per_week", 40, "group staff (settings)"),  # the most generous
    ("gina", ["course"], "max_memory", 8 * 1024**3, "group course (database)"),
    ("frank", ["staff"], "gpu_hours_per_week", 0, "user frank (database)"),  # the user's own rule wins, even 0
    ("nobody", [], "gpu_hours_per_week", None, "no limit set"),
]


@pytest.mark.parametrize("user, groups, field, value, source", RESOLUTION)
def test_resolution(user, groups, field, value, source):
    limit = getattr(resolve(user, groups, RULES), field)
    assert (limit.value, limit.source) == (value, source)


def test_no_rules_means_no_limits():
    q = resolve("x", ["g"], [])
    assert q.max_gpus.value is None and q.allows_profile("anything")


EX, SH, MIG = "exclusive", "shared", "mig"
G = 1024**3
WEEK = "in the last 7 days"
CHECKS = [
    # (user, groups, held, profile, mode, count, memory, cpus, GPU-hours used, None | fragments of the refusal)
    ("nobody", [], [], "gpu-1", EX, 1, 4 * G, 2, 0, None),
    ("nobody", [], [Held(EX, 1)], "gpu-1", EX, 1, 4 * G, 2, 0, ["max_gpus = 1 (set by the default (settings))", "You hold 1 GPU(s)"]),
    ("nobody", [], [], "gpu-2", EX, 2, 4 * G, 2, 0, ["max_gpus = 1", "asks for 2 more"]),
    ("nobody", [], [Held(SH, 1)], "gpu-1", EX, 1, 4 * G, 2, 0, None),  # slices do not count as whole GPUs
    ("nobody", [], [Held(SH, 1)], "mig", MIG, 1, 4 * G, 2, 0, ["max_shared_slices = 1", "shared or MIG slice(s)"]),
    ("nobody", [], [Held(EX, 1)], "cpu", "none", 0, 4 * G, 2, 0, None),  # CPU profiles are never GPU-limited
    ("carol", ["ml-lab"], [Held(EX, 1)], "gpu-1", EX, 1, 4 * G, 2, 0, None),
    ("carol", ["ml-lab"], [], "gpu-4", EX, 4, 4 * G, 2, 0, ["Profile 'gpu-4' is not in your allowed profiles (cpu, gpu-1"]),
    ("dave", ["vision"], [], "gpu-4", SH, 1, 4 * G, 2, 0, ["max_shared_slices = 0 (set by group vision (settings))"]),
    ("alice", [], [Held(EX, 4)], "gpu-2", EX, 2, 4 * G, 2, 0, None),
    ("alice", [], [Held(EX, 4), Held(EX, 1)], "gpu-2", EX, 2, 4 * G, 2, 0, ["max_gpus = 6 (set by user alice (database))"]),
    # ceilings: memory and CPUs of the profile, GPU or not
    ("gina", ["course"], [], "cpu", "none", 0, 8 * G, 4, 0, None),
    ("gina", ["course"], [], "big", "none", 0, 16 * G, 4, 0, ["16G of memory, above your ceiling max_memory = 8G (set by group course (database))"]),
    ("gina", ["course"], [], "wide", "none", 0, 4 * G, 8, 0, ["asks for 8 CPUs, above your ceiling max_cpus = 4"]),
    # weekly GPU-hours: refused once used up, with what remains; CPU-only starts are not counted
    ("gina", ["course"], [], "gpu-1", EX, 1, 4 * G, 2, 9.99, None),
    ("gina", ["course"], [], "gpu-1", EX, 1, 4 * G, 2, 10.0, ["Weekly GPU-hours used up: you used 10.00 of 10 GPU-hours in the last 7 days", "set by group course (database)); 0.00 remain"]),
    ("gina", ["course"], [], "mig", MIG, 1, 4 * G, 2, 12.5, ["used 12.50 of 10", "0.00 remain"]),
    ("gina", ["course"], [], "cpu", "none", 0, 4 * G, 2, 50, None),
    ("frank", [], [], "gpu-1", EX, 1, 4 * G, 2, 0, ["used 0.00 of 0 GPU-hours"]),
]


@pytest.mark.parametrize("user, groups, held, profile, mode, count, memory, cpus, used, fragments", CHECKS)
def test_refusal(user, groups, held, profile, mode, count, memory, cpus, used, fragments):
    ask = Ask(profile, mode, count, memory, cpus)
    message = refusal(resolve(user, groups, RULES), held, ask, WeekUsed(used, WEEK))
    if fragments is None:
        assert message is None
    else:
        for fragment in fragments:
            assert fragment in message, message


def test_bad_scope_is_refused():
    with pytest.raises(ValueError, match="scope 'team'"):
        QuotaRule("team", "x")
