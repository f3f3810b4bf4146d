"""The container's limits from cgroup v1 and v2 files, laid out as the kernel does."""

import pytest

from gpuhub.singleuser.cgroups import Limits, read_limits

MiB = 1024**2


def lay_out(root, files: dict):
    for path, text in files.items():
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    return str(root)


CASES = [
    (
        "v2 capped",
        {"cgroup.controllers": "cpu memory pids", "memory.max": str(768 * MiB), "memory.current": str(100 * MiB), "cpu.max": "50000 100000"},
        Limits("v2", 768 * MiB, 100 * MiB, 0.5),
    ),
    (
        "v2 unlimited",
        {"cgroup.controllers": "cpu memory", "memory.max": "max", "memory.current": "5", "cpu.max": "max 100000"},
        Limits("v2", None, 5, None),
    ),
    (
        "v1 capped (what Docker 20.10 gives here)",
        {
            "memory/memory.limit_in_bytes": str(512 * MiB),
            "memory/memory.usage_in_bytes": str(64 * MiB),
            "cpu/cpu.cfs_quota_us": "50000",
            "cpu/cpu.cfs_period_us": "100000",
        },
        Limits("v1", 512 * MiB, 64 * MiB, 0.5),
    ),
    (
        "v1 unlimited",
        {"memory/memory.limit_in_bytes": "9223372036854771712", "cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
        Limits("v1", None, None, None),
    ),
    ("no cgroup files", {"unrelated": "x"}, Limits("none", None, None, None)),
]


@pytest.mark.parametrize("what, files, limits", CASES, ids=[c[0] for c in CASES])
def test_read_limits(tmp_path, what, files, limits):
    assert read_limits(lay_out(tmp_path, files)) == limits
