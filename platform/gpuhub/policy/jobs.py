"""Batch jobs, pure: a job as its person asked for it (``JobRequest``; checked field by field by
``web.payloads.job_request``), the command a job's
container runs (``container_command``: ``torchrun`` for a multi-GPU script, ``papermill`` for a
notebook, the person's own command otherwise, under a wrapper that keeps the output in the home and
passes a stop on as SIGTERM), its environment (NCCL defaults), and its states. No Docker, no hub.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..config.schema import Profile
from .decide import Start
from .profiles import gpu_request

JOBS_DIR = "gpuhub-jobs"  # in the home: ~/gpuhub-jobs/ID/output.log (and a notebook's executed copy)
OUTPUT_FILE = "output.log"

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
    """A job as its person asked for it, checked (``web.payloads.job_request``): what ``JobService.submit`` queues."""

    profile: Profile
    command: tuple[str, ...]  # the script or program and its arguments
    wall_time: int  # seconds
    name: str
    workdir: str  # relative to the home; "" for the home itself


def job_start(username: str, groups, profile: Profile, server_name: str) -> Start:
    """A job's start as quotas and the allocator see it: beyond its person's count quota only while
    their other work holds it, it waits (``Start.waits_for_own``)."""
    return Start(
        username, server_name, tuple(groups), profile.name, gpu_request(profile), profile.mem_limit, profile.cpu_limit, waits_for_own=True
    )


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
