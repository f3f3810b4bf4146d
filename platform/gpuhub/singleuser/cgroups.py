"""The container's own memory and CPU limits, read from its cgroup files (v1 and v2).

``read_limits(root)``: ``root`` is ``/sys/fs/cgroup`` in a container; tests pass a directory laid out
like either version. No subprocess, nothing but small file reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

UNLIMITED_V1 = 1 << 62  # cgroup v1 writes "no limit" as a page-rounded 2^63 - 1


@dataclass(frozen=True)
class Limits:
    version: str  # "v2", "v1" or "none"
    memory_limit: int | None  # bytes; None: no limit
    memory_used: int | None  # bytes
    cpu_limit: float | None  # CPUs; None: no limit


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def read_limits(root: str = "/sys/fs/cgroup") -> Limits:
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        memory_max = _read(os.path.join(root, "memory.max"))
        cpu_max = (_read(os.path.join(root, "cpu.max")) or "max 100000").split()
        cpu = None if cpu_max[0] == "max" else int(cpu_max[0]) / int(cpu_max[1])
        return Limits(
            "v2",
            None if memory_max in (None, "max") else _int(memory_max),
            _int(_read(os.path.join(root, "memory.current"))),
            cpu,
        )
    memory_dir, cpu_dir = os.path.join(root, "memory"), os.path.join(root, "cpu")
    if not os.path.isdir(memory_dir) and not os.path.isdir(cpu_dir):
        return Limits("none", None, None, None)
    limit = _int(_read(os.path.join(memory_dir, "memory.limit_in_bytes")))
    quota = _int(_read(os.path.join(cpu_dir, "cpu.cfs_quota_us")))
    period = _int(_read(os.path.join(cpu_dir, "cpu.cfs_period_us"))) or 100000
    return Limits(
        "v1",
        None if limit is None or limit >= UNLIMITED_V1 else limit,
        _int(_read(os.path.join(memory_dir, "memory.usage_in_bytes"))),
        None if quota is None or quota < 0 else quota / period,
    )
