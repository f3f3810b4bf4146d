"""What every benchmark here shares: the machine it ran on, and its section of docs/benchmarks.md
(between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; the rest of the file is kept)."""

from __future__ import annotations

import os
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    import docker

    mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    server = docker.from_env().version().get("Version", "?")
    return f"{len(os.sched_getaffinity(0))} CPUs (nproc), {mem_kib / 2**20:.1f} GiB memory (MemTotal), Docker Engine {server}"


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0..100): linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def write_section(name: str, section: str, heading: str = "") -> None:
    """Put ``section`` between NAME's markers in docs/benchmarks.md; append them (under ``heading``) if absent."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if start not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + f"{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(f"{head}{start}\n{section.rstrip(chr(10))}\n{end}{tail}", encoding="utf-8")
