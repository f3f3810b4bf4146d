"""Run the reliability tier (tests/reliability: faults, fuzzed input, security) with more rounds of each
fault than CI runs, and write its figures to docs/reliability.md (section "faults").

    python benchmarks/reliability.py --rounds 5 --write
    python benchmarks/reliability.py --rounds 1 --only "containers_killed or notice_payloads"   # part of it

Needs what the tier needs: a Docker engine (it is restarted by one scenario), the built CPU user image
and PostgreSQL's binaries; run it as root on a machine with nothing else on its engine. Every round of a
scenario that passed wrote one line to build/reliability/faults.jsonl; the fuzz tests wrote their
case counts to fuzz.jsonl; pytest's JUnit report gives the outcome of every test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import machine, percentile, write_section
from tests.reliability.audit import OUT

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
FAULT_TESTS = "tests/reliability/test_faults.py"


def run_tier(rounds: int, only: str | None) -> tuple[int, float, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("faults.jsonl", "fuzz.jsonl"):
        (OUT / name).unlink(missing_ok=True)
    junit = OUT / "junit.xml"
    began = time.monotonic()
    rc = subprocess.call(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}", "tests/reliability",
         *(["-k", only] if only else [])],
        env={**os.environ, "GPUHUB_FAULT_ROUNDS": str(rounds)},
    )
    return rc, time.monotonic() - began, junit


def outcomes(junit: Path) -> dict[str, Counter]:
    """test file -> Counter of passed/failed/error/skipped."""
    found: dict[str, Counter] = defaultdict(Counter)
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[module][kinds[0] if kinds else "passed"] += 1
    return found


def lines(name: str) -> list[dict]:
    path = OUT / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def seconds(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {max(values):.1f}" if values else "–"


def fault_table(rounds: int, results: Counter) -> str:
    by_scenario: dict[str, list[dict]] = defaultdict(list)
    for row in lines("faults.jsonl"):
        by_scenario[row["scenario"]].append(row)
    head = (
        "| scenario | rounds passed | servers still running after the fault | settled in, s (p50 / max) |"
        " next spawns ready in, s (p50 / max) | scenario figures |\n|---|---|---|---|---|---|\n"
    )
    out = []
    own = {"engine_back_s": "engine back in {} s (p50)", "hub_back_s": "hub back in {} s (p50)", "gave_up_s": "spawn given up after {} s (p50)",
           "outage_spawn_status": "a spawn during the outage got {}", "outage_list_status": "a user list got {}"}
    for scenario, rows in by_scenario.items():
        extra = []
        for key, text in own.items():
            values = [r[key] for r in rows if key in r]
            if values:
                middle = percentile(values, 50) if isinstance(values[0], float) else Counter(values).most_common(1)[0][0]
                extra.append(text.format(f"{middle:.1f}" if isinstance(middle, float) else middle))
        if any("in_flight" in r for r in rows):
            extra.insert(0, f"{sum(r.get('in_flight', 0) for r in rows)} spawns in flight when the fault landed (all rounds)")
        survived = sum(r["survived"] for r in rows), sum(r["users"] for r in rows)
        out.append(
            f"| {scenario} | {len(rows)} of {rounds} | {survived[0]} of {survived[1]} |"
            f" {seconds([r['settle_s'] for r in rows])} | {seconds([r['next_spawns_s'] for r in rows if r['restarted']])} |"
            f" {'; '.join(extra) or '–'} |"
        )
    failed = results["failure"] + results["error"]
    note = (
        f"\nEvery passed round ended with **0 double-assigned GPUs, 0 leaked allocations, 0 orphan containers,"
        f" 0 lost home files**, and every user whose server the fault took got a ready server on the next spawn."
        f" Rounds that failed: **{failed}**.\n"
    )
    return head + "\n".join(out) + "\n" + note


def fuzz_table() -> str:
    rows = lines("fuzz.jsonl")
    if not rows:
        return "(the fuzz tests recorded nothing)\n"
    out = ["| input | cases | responses by status |", "|---|---|---|"]
    for row in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(row["status"].items()))
        out.append(f"| {row['target']} | {row['cases']} | {statuses} |")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each fault scenario (CI runs 1)")
    parser.add_argument("--write", action="store_true", help="write the figures to docs/reliability.md")
    parser.add_argument(
        "--only", metavar="EXPR",
        help="only the tier's tests pytest's -k EXPR selects (the benchmarks tier's smoke run); never with --write",
    )
    args = parser.parse_args()
    if args.only and args.write:
        parser.error("--only runs part of the tier: its figures are not the tier's, so --write is refused with it")
    rc, wall, junit = run_tier(args.rounds, args.only)
    results = outcomes(junit)
    summary = ", ".join(
        f"{module.removeprefix('test_')}: {c['passed']} passed, {c['failure'] + c['error']} failed" for module, c in sorted(results.items())
    )
    section = (
        f"Run: `python benchmarks/reliability.py --rounds {args.rounds} --write` on {time.strftime('%Y-%m-%d')},"
        f" {machine()}; the whole tier took {wall / 60:.1f} min (pytest exit {rc}). Tests: {summary}.\n\n"
        f"### Faults ({args.rounds} rounds of each scenario)\n\n{fault_table(args.rounds, results['test_faults'])}\n"
        f"### Fuzzed input\n\n{fuzz_table()}"
    )
    print(section)
    if args.write:
        write_section("faults", section, doc=DOC)
    return rc


if __name__ == "__main__":
    sys.exit(main())
