"""Batch jobs, pure: a job request checked field by field (``job_request``), the command a job's
container runs (``container_command``: ``torchrun`` for a multi-GPU script, ``papermill`` for a
notebook, the person's own command otherwise, under a wrapper that keeps the output in the home and
passes a stop on as SIGTERM), its environment (NCCL defaults), and its states. No Docker, no hub.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ..config.schema import Profile, Settings
from .errors import FieldRefused, SpawnRefused
from .profiles import choose_profile

JOBS_DIR = "gpuhub-jobs"  # in the home: ~/gpuhub-jobs/ID/output.log (and a notebook's executed copy)
OUTPUT_FILE = "output.log"
FIELDS = ("profile", "command", "wall_time", "name", "workdir")
MAX_ARGS = 256
MAX_ARG = 4096
MAX_NAME = 100
MAX_WORKDIR = 1024
NAME = re.compile(r"^[^\x00-\x1f\x7f<>&\"]{1,100}$")

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED = "succeeded", "failed", "cancelled", "timed out", "stopped"
LIVE = (QUEUED, RUNNING)
ENDED = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED)

# The job's process under bash as the container's first process: its output appended to the log in
# the home and followed onto the container's own output (``docker logs``) until it ends; a stop
# (SIGTERM to the container) passed on to it; the container exits with the job's own status (a wait
# cut short by the stop is waited again while the job runs: bash's own status for it, once reaped by
# its SIGCHLD handler, is not to be trusted).
WRAPPER = r"""
dir="$HOME/$GPUHUB_JOB_DIR"
mkdir -p "$dir" || exit 2
log="$dir/output.log"
: >> "$log"
cd "$HOME/$GPUHUB_JOB_WORKDIR" || { echo "gpuhub: no folder ~/$GPUHUB_JOB_WORKDIR" | tee -a "$log"; exit 2; }
"$@" >> "$log" 2>&1 < /dev/null &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' TERM INT
tail -n +1 -F -s 0.5 --pid=$pid "$log" 2>/dev/null &
while :; do
  wait $pid
  status=$?
  kill -0 $pid 2>/dev/null || break
done
wait
exit $status
""".strip()


@dataclass(frozen=True)
class JobRequest:
    """A job as its person asked for it, checked: what ``JobService.submit`` queues."""

    profile: Profile
    command: tuple[str, ...]  # the script or program and its arguments
    wall_time: int  # seconds
    name: str
    workdir: str  # relative to the home; "" for the home itself


def _bad(field: str, message: str) -> FieldRefused:
    return FieldRefused(field, message, why="job")


def job_request(settings: Settings, data: dict, groups) -> JobRequest:
    """``data`` (a REST body, the CLI's) checked for a member of ``groups``: a ``JobRequest``, or
    ``FieldRefused`` (400) naming the field and what is accepted (403: a profile they may not use)."""
    for key in data:
        if key not in FIELDS:
            raise _bad(str(key)[:40] or "body", f"unknown field {str(key)[:40]!r}. Accepted fields: {', '.join(FIELDS)}")
    try:
        profile = choose_profile(settings, {"profile": data["profile"]} if "profile" in data else {}, groups)
    except SpawnRefused as e:
        if e.status_code != 400:
            raise  # 403: a profile of groups the person is not in
        raise _bad("profile", e.message.removeprefix("profile: ")) from None
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise _bad("command", 'not a list of strings. Accepted: the script (or program) and its arguments, e.g. ["train.py", "--epochs", "3"]')
    if len(command) > MAX_ARGS:
        raise _bad("command", f"{len(command)} items. Accepted: at most {MAX_ARGS}")
    for i, arg in enumerate(command):
        if len(arg) > MAX_ARG or "\x00" in arg:
            raise _bad("command", f"item {i} is longer than {MAX_ARG} characters or holds a NUL. Accepted: text up to {MAX_ARG} characters")
    if not command[0].strip():
        raise _bad("command", "the first item is empty. Accepted: a script (train.py, analysis.ipynb) or a program")
    limit = settings.jobs.limit_for(groups)
    wall_time = data.get("wall_time", limit)
    if isinstance(wall_time, bool) or not isinstance(wall_time, int) or not 60 <= wall_time <= limit:
        raise _bad("wall_time", f"{wall_time!r}. Accepted: seconds from 60 to {limit} (your groups' limit, [jobs])")
    name = data.get("name", "")
    if not isinstance(name, str) or (name and not NAME.match(name)):
        raise _bad("name", f"Accepted: text of 1 to {MAX_NAME} characters, no control characters or <>&\"")
    workdir = data.get("workdir", "")
    if not isinstance(workdir, str) or len(workdir) > MAX_WORKDIR or "\x00" in workdir:
        raise _bad("workdir", "Accepted: a folder in your home, relative to it (e.g. projects/mnist)")
    normal = posixpath.normpath(workdir) if workdir else ""
    if normal.startswith(("/", "..")) or normal == ".":
        if normal != ".":
            raise _bad("workdir", f"{workdir[:80]!r} is not inside your home. Accepted: a folder relative to your home")
        normal = ""
    return JobRequest(profile, tuple(command), wall_time, name or posixpath.basename(command[0])[:MAX_NAME], normal)


def program(command: tuple[str, ...], gpus: int, out_dir: str) -> list[str]:
    """What runs for ``command`` with ``gpus`` GPUs: ``python -u`` for a script (``torchrun``, one
    process per GPU, for a script given several GPUs), ``papermill`` for a notebook (arguments as
    ``-p NAME VALUE`` pairs; the executed copy in the job's folder ``out_dir``), the command as given
    otherwise."""
    first, rest = command[0], list(command[1:])
    if first.endswith(".py"):
        if gpus > 1:
            return ["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", str(gpus), first, *rest]
        return ["python", "-u", first, *rest]
    if first.endswith(".ipynb"):
        return ["papermill", "--log-output", first, f"{out_dir}/{posixpath.basename(first)}", *rest]
    return [first, *rest]


def container_command(command: tuple[str, ...], gpus: int, out_dir: str) -> list[str]:
    """The container's whole command: the wrapper (``WRAPPER``) around ``program``."""
    return ["bash", "-c", WRAPPER, "gpuhub-job", *program(command, gpus, out_dir)]


def job_dir(job_id: int) -> str:
    return f"{JOBS_DIR}/{job_id}"


def environment(job_id: int, workdir: str, gpus: int, cpu_limit: float) -> dict[str, str]:
    """A job's variables: where its output goes, unbuffered Python, and for several GPUs the NCCL
    defaults of one host (loopback sockets, no InfiniBand probing, errors raised, not hung) and
    ``OMP_NUM_THREADS`` split between the processes."""
    env = {
        "GPUHUB_JOB_ID": str(job_id),
        "GPUHUB_JOB_DIR": job_dir(job_id),
        "GPUHUB_JOB_WORKDIR": workdir,
        "PYTHONUNBUFFERED": "1",
    }
    if gpus > 1:
        env.update({
            "NCCL_SOCKET_IFNAME": "lo",
            "NCCL_IB_DISABLE": "1",
            "NCCL_DEBUG": "WARN",
            "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
            "OMP_NUM_THREADS": str(max(1, int(cpu_limit // gpus))) if cpu_limit else "1",
        })
    return env


def ended_state(exit_code: int | None, reason: str) -> str:
    """A job's end: its own (succeeded at exit 0, else failed) unless the hub ended it for ``reason``."""
    if reason:
        return reason
    return SUCCEEDED if exit_code == 0 else FAILED
