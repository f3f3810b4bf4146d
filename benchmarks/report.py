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


# Who spent a run's CPU: each process's command name (``python`` and ``python3`` named by the module or
# script they run) sorted into these parts; anything else is "other".
CPU_PARTS = {
    "user servers": ("jupyterhub-sing", "jupyter-lab", "tini"),
    "the hub": ("python -m jupyterhub", "python -m gpuhub.agent"),
    "the proxy": ("node", "configurable-ht"),
    "the engine": ("dockerd", "containerd", "containerd-shim", "runc", "exe", "docker-proxy"),
}


def _process_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU-seconds used so far: user + system), for every process now."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            if name in ("python", "python3"):
                argv = Path(entry.path, "cmdline").read_text().split("\0")
                name = f"python {' '.join(a for a in argv[1:3] if a)}".strip()
        except (OSError, ValueError):
            continue  # gone meanwhile
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def _busy_cpu_seconds() -> float:
    values = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class CpuAccount:
    """The machine's CPU-seconds over a stretch of a run, and who spent them (``CPU_PARTS``), from
    ``/proc``: ``with CpuAccount() as cpu: ...`` then ``cpu.busy``, ``cpu.parts``. A process that
    both started and ended inside the stretch counts only in ``busy`` (e.g. health checks)."""

    def __enter__(self) -> CpuAccount:
        self._before, self._busy = _process_cpu(), _busy_cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.busy = _busy_cpu_seconds() - self._busy
        self.parts = dict.fromkeys([*CPU_PARTS, "other"], 0.0)
        for pid, (name, used) in _process_cpu().items():
            before = self._before.get(pid)
            spent = used - (before[1] if before and before[0] == name else 0.0)
            part = next((p for p, names in CPU_PARTS.items() if name in names), "other")
            self.parts[part] += spent
