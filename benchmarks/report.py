"""What every benchmark here shares: the machine it ran on, and its section of docs/benchmarks.md
(between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; the rest of the file is kept)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
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


def write_section(name: str, section: str, heading: str = "", doc: Path = DOC) -> None:
    """Put ``section`` between NAME's markers in ``doc`` (docs/benchmarks.md unless told); append them
    (under ``heading``) if absent."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# {doc.stem.capitalize()}\n"
    if start not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + f"{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{head}{start}\n{section.rstrip(chr(10))}\n{end}{tail}", encoding="utf-8")


def at_once(names: list[str], fn: Callable[[str], float | None], timeout: float) -> tuple[list[float | None], float]:
    """``fn(name)`` for every name from its own thread, all released at the same moment (a barrier):
    the results in ``names`` order (None: failed or not back within ``timeout``), and the wall time."""
    results: dict[str, float | None] = {}
    barrier = threading.Barrier(len(names) + 1)

    def one(name: str) -> None:
        barrier.wait(timeout=60)
        results[name] = fn(name)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    barrier.wait(timeout=60)
    began = time.monotonic()
    for t in threads:
        t.join(timeout=max(0.0, timeout - (time.monotonic() - began)))
    return [results.get(n) for n in names], time.monotonic() - began
