"""What must hold after any fault, read from the real parts: the hub's REST API (which servers it
thinks run), the hub's database (which GPU allocations are live), the Docker engine (which containers
exist, which devices each sees) and the home volumes on the host (are the users' files there).

    problems = audit(hub, homes)          # {} when everything holds
    seconds = settle(hub, homes)          # waits until audit is clean and nothing is pending

Also: ``seed_home`` (a user's file, written before a fault), ``restart_dockerd`` and ``record`` (one
line of figures per scenario round, for ``benchmarks/reliability.py`` and docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import docker
import requests
import sqlalchemy as sa

from gpuhub.policy.slugs import render_name
from tests.hubprocess import live_allocations

MARKER = ".gpuhub-reliability-marker"
OUT = Path(os.environ.get("GPUHUB_RELIABILITY_OUT", Path(__file__).resolve().parents[2] / "build" / "reliability"))


# --- the hub's view ------------------------------------------------------------------------------------
def servers(hub) -> dict[str, dict]:
    """user -> their default server's model, for every user with a server running or starting."""
    r = hub.session.get(f"{hub.url}/hub/api/users?state=active", timeout=30)
    r.raise_for_status()
    return {u["name"]: u["servers"][""] for u in r.json() if u.get("servers", {}).get("")}


def containers(hub) -> list[dict]:
    """The run's containers as the engine lists them, with the devices each was given (``devices``)."""
    out = []
    for c in hub.docker.api.containers(all=True, filters={"name": f"^{hub.prefix}-"}):
        try:
            env = hub.docker.api.inspect_container(c["Id"])["Config"]["Env"] or []
        except docker.errors.NotFound:  # removed between the list and the inspect
            continue
        visible = dict(e.split("=", 1) for e in env if "=" in e).get("NVIDIA_VISIBLE_DEVICES", "void")
        c["devices"] = [] if visible in ("void", "none", "") else visible.split(",")
        out.append(c)
    return out


# --- homes ---------------------------------------------------------------------------------------------
def home_path(hub, user: str) -> Path | None:
    name = render_name(f"{hub.prefix}-home-{{slug}}", user)
    try:
        return Path(hub.docker.volumes.get(name).attrs["Mountpoint"])
    except docker.errors.NotFound:
        return None


def seed_home(hub, user: str) -> str:
    """A returning user: their home volume holds a file from earlier work. Returns its content."""
    name = render_name(f"{hub.prefix}-home-{{slug}}", user)
    hub.docker.volumes.create(name)
    path = home_path(hub, user)
    content = f"{user} {secrets.token_hex(8)}\n"
    (path / MARKER).write_text(content)
    os.chown(path, 1000, 100)
    os.chown(path / MARKER, 1000, 100)
    return content


def home_intact(hub, user: str, content: str) -> bool:
    path = home_path(hub, user)
    try:
        return path is not None and (path / MARKER).read_text() == content
    except OSError:
        return False


# --- the invariants --------------------------------------------------------------------------------------
def audit(hub, homes: dict[str, str]) -> dict[str, list[str]]:
    """Every broken invariant, by kind (empty when all hold):

    - ``double_assigned``: a device in two live allocations, or visible to two running containers
      (this tier's GPU profiles are all exclusive);
    - ``leaked_allocations``: a live allocation that no running container holds (by its
      ``org.gpuhub.allocation`` label) while its user's server is not starting; one held by another
      user's container counts as double-assigned;
    - ``servers_without_container``: a server the hub calls ready whose container does not run;
    - ``orphan_containers``: a container of a user with no server, or a stopped container next to a
      ready server (DockerSpawner removes its containers: any left over is an orphan);
    - ``lost_homes``: a seeded home file missing or changed;
    - ``pending``: spawns or stops still in progress (not a fault: the state is not settled yet).
    """
    by_user = servers(hub)
    live = live_allocations(hub)
    found = containers(hub)
    running = [c for c in found if c["State"] == "running"]
    problems: dict[str, list[str]] = {}

    def add(kind, what):
        problems.setdefault(kind, []).append(what)

    for uuid, n in Counter(uuid for _, _, uuid in live).items():
        if n > 1:
            add("double_assigned", f"{uuid} in {n} live allocations")
    for uuid, n in Counter(d for c in running for d in c["devices"]).items():
        if n > 1:
            add("double_assigned", f"{uuid} visible to {n} running containers")

    held_by = {c["Labels"].get("org.gpuhub.allocation"): c for c in running}
    for aid, user, uuid in live:
        holder = held_by.get(str(aid))
        pending = (by_user.get(user) or {}).get("pending")
        if holder is None and not pending:
            add("leaked_allocations", f"allocation {aid} ({uuid}) of {user}: no running container holds it")
        elif holder is not None and holder["Labels"].get("org.gpuhub.user") != user:
            add("double_assigned", f"allocation {aid} of {user} held by {holder['Names'][0]}")

    running_servers = {(c["Labels"].get("org.gpuhub.user"), c["Labels"].get("org.gpuhub.server", "")) for c in running}
    for user, server in by_user.items():
        if server.get("ready") and not server.get("pending") and (user, "") not in running_servers:
            add("servers_without_container", f"{user}'s server is ready in the hub; no container of it runs")

    for c in found:
        user, name = c["Labels"].get("org.gpuhub.user"), c["Names"][0].lstrip("/")
        server = by_user.get(user)
        if server is None:
            add("orphan_containers", f"{name} ({c['State']}) of {user}, who has no server")
        elif server.get("ready") and c["State"] != "running":
            add("orphan_containers", f"{name} ({c['State']}) beside {user}'s ready server")

    for user, content in homes.items():
        if not home_intact(hub, user, content):
            add("lost_homes", f"{user}'s {MARKER}")

    for user, server in by_user.items():
        if server.get("pending"):
            add("pending", f"{user}: {server['pending']}")
    return problems


def settle(hub, homes: dict[str, str], timeout: float = 120) -> float:
    """Seconds until the audit is clean and nothing is pending; AssertionError with what still
    fails after ``timeout``. (The hub polls its servers every 2 s in this tier.)"""
    began = time.monotonic()
    problems: dict = {"not audited": ["the hub's API did not answer"]}
    while time.monotonic() - began < timeout:
        try:
            problems = audit(hub, homes)
        except (requests.RequestException, sa.exc.OperationalError) as e:
            problems = {"not audited": [str(e)[:200]]}
        if not problems:
            return time.monotonic() - began
        time.sleep(1)
    raise AssertionError(f"not settled after {timeout:.0f}s: {json.dumps(problems, indent=1)}\n{hub.log_tail(60)}")


# --- faults ------------------------------------------------------------------------------------------------
def restart_dockerd(timeout: float = 90) -> float:
    """Restart the Docker engine the way this host runs it (systemd, or a dockerd started by hand with
    the same arguments). Running containers stop with it. Returns the seconds until it answers again."""
    began = time.monotonic()
    client = docker.from_env()
    if shutil.which("systemctl") and subprocess.run(["systemctl", "is-active", "--quiet", "docker"]).returncode == 0:
        subprocess.run(["systemctl", "restart", "docker"], check=True)
    else:
        pid = int(subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True, check=True).stdout)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        os.kill(pid, 15)
        while not exited(pid) and time.monotonic() - began < timeout:
            time.sleep(0.2)
        OUT.mkdir(parents=True, exist_ok=True)
        log = open(OUT / "dockerd-restarted.log", "ab")
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while time.monotonic() - began < timeout:
        try:
            client.ping()
            return time.monotonic() - began
        except Exception:  # docker-py raises several types while the engine is away
            time.sleep(0.5)
    raise AssertionError(f"dockerd did not answer within {timeout}s of its restart")


def exited(pid: int) -> bool:
    """Whether process ``pid`` has ended. A dockerd this module started is its child: reap it, or it
    stays a zombie (in /proc) until the tests end."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:  # not our child
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


# --- figures -------------------------------------------------------------------------------------------------
def record(scenario: str, round_no: int, **figures) -> None:
    """One JSON line per scenario round in build/reliability/faults.jsonl (docs/reliability.md's source)."""
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "faults.jsonl", "a") as f:
        f.write(json.dumps({"scenario": scenario, "round": round_no, "at": time.time(), **figures}) + "\n")
