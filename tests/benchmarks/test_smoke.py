"""Benchmarks tier: every script in ``benchmarks/`` runs end to end with tiny sizes, so none rots.

A benchmark is run by hand and writes its figures to docs; nothing ran them between those runs, and
two broke unnoticed (allocator.py after ``store.allocate`` changed; load.py's undeclared aiohttp). Here
each script runs as a user runs it (its own process, its command line), on the real parts it needs (the
engine, real hubs, the composed platform, a Swarm built on this machine), with sizes that take seconds,
never writing its figures: the docs it writes must be byte for byte the same afterwards. A script in
``benchmarks/`` with no row in ``SMOKE`` fails the tier. Figures printed here are not results.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
BENCHMARKS = REPO / "benchmarks"
DOCS = [REPO / "docs" / "benchmarks.md", REPO / "docs" / "reliability.md"]

# script -> (its arguments: tiny sizes, figures not written; a line of the table it always prints; time limit in s)
SMOKE: dict[str, tuple[list[str], str, float]] = {
    "allocator.py": (["--gpus", "8", "--users", "40", "--ops", "20", "--no-write"], "**allocate + release p99**", 120),
    "boot.py": (["--repeats", "1", "--no-write"], "| **request → ready (s)** |", 300),
    "burst.py": (["--students", "2", "--slots", "1", "--no-write"], "p95 against plain DockerSpawner", 600),
    "gpu_metrics.py": (["--requests", "10", "--no-write"], "| simulated GPU, env-only |", 300),
    "https.py": (["--requests", "10"], "| hub health check |", 600),
    "load.py": (["--users", "2"], "| spawn request |", 900),
    "metrics_refresh.py": (["--small", "10", "--large", "200", "--users", "5", "--rounds", "2", "--no-write"], "Ratio 200 / 10", 120),
    "reliability.py": (["--rounds", "1", "--only", "containers_killed or notice_payloads"], "rounds passed", 600),
    "spawn_latency.py": (["--repeats", "1", "--burst", "2", "--rounds", "1", "--no-write"], "| single spawn, median (s) |", 600),
    "swarm.py": (["--repeats", "1", "--students", "2", "--requests", "4", "--no-write"], "double assignments", 1500),
}


def scripts() -> set[str]:
    """The runnable scripts of benchmarks/ (a library such as report.py has no ``__main__``)."""
    return {p.name for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()}


def fingerprint() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in DOCS}


def test_every_benchmark_script_has_a_smoke_run():
    assert scripts() == set(SMOKE), (
        f"benchmarks/ scripts without a smoke run: {sorted(scripts() - set(SMOKE))}; "
        f"smoke runs of scripts that are gone: {sorted(set(SMOKE) - scripts())}"
    )


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_a_benchmark_runs_with_tiny_sizes_and_writes_nothing(script):
    arguments, printed, limit = SMOKE[script]
    before = fingerprint()
    try:
        done = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), *arguments],
            cwd=REPO, capture_output=True, text=True, timeout=limit,
            # reliability.py runs pytest itself: part of a tier there, so not this run's every-tier rule
            env={**{k: v for k, v in os.environ.items() if k != "GPUHUB_REQUIRE_ALL_TIERS"}, "PYTHONUNBUFFERED": "1"},
        )
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b"")[-4000:] if isinstance(e.stdout, bytes) else (e.stdout or "")[-4000:]
        pytest.fail(f"benchmarks/{script} {' '.join(arguments)} ran past {limit:.0f} s; its output ended:\n{tail}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"benchmarks/{script} {' '.join(arguments)} exited {done.returncode}:\n{output[-6000:]}"
    assert printed in done.stdout, f"benchmarks/{script} printed no report ({printed!r} missing):\n{output[-6000:]}"
    assert fingerprint() == before, f"benchmarks/{script} {' '.join(arguments)} changed the docs: a smoke run must write nothing"
