"""Batch jobs on the real engine and a real hub process (simulated inventory of 4 whole GPUs): a script
submitted with the ``gpuhub`` CLI runs in its person's image and home, non-root, with exactly its GPU,
its output kept in the home and through the API, its exit status and GPU-hours recorded, its GPU
released; a job waits in the same line as servers behind busy GPUs and runs when one frees; a waiting
and a running job cancelled; a wall time reached; a quota refusal and bad specs refused naming the
field, nothing stored; two GPUs get ``torchrun`` (a process per GPU) and the NCCL defaults; a notebook
runs through papermill with its parameters; a job survives ``kill -9`` of the hub."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile

import pytest

from gpuhub.policy.slugs import user_slug
from tests.hubprocess import REPO, USER_IMAGE, remove_prefixed, token_of
from tests.integration.test_admin import OPS, ROLES, call
from tests.integration.test_gpu_allocation import hold_every_whole_gpu, live_allocations, make_hub, wait_until

PREFIX = "gpuhubtest-jobs"

TRAIN = """
import os, sys
print("args", sys.argv[1:])
print("uid", os.getuid(), "home", os.environ["HOME"], "cwd", os.getcwd())
print("devices", os.environ.get("NVIDIA_VISIBLE_DEVICES"))
print("rank", os.environ.get("RANK", "-"), "of", os.environ.get("WORLD_SIZE", "-"), "nccl", os.environ.get("NCCL_SOCKET_IFNAME", "-"))
"""

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "epochs = 1", "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": "print(f'trained for {epochs} epochs')", "outputs": [], "execution_count": None},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def jobs_hub(tmp_path_factory):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path_factory.mktemp("jobs"), prefix=PREFIX)
    hub.extra_config += ROLES
    hub.start()
    for user in ("alice", "bob"):
        write_home(hub, user, "train.py", TRAIN)
    write_home(hub, "alice", "nb/run.ipynb", json.dumps(NOTEBOOK))
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def home_volume(hub, user: str) -> str:
    return f"{hub.prefix}-home-{user_slug(user)}"


def write_home(hub, user: str, path: str, text: str) -> None:
    """``text`` into ``user``'s home volume at ``path``, as uid 1000 (the volume made from the image)."""
    hub.docker.containers.run(
        USER_IMAGE, ["sh", "-c", 'mkdir -p "$(dirname "$1")" && printf "%s" "$CONTENT" > "$1"', "sh", f"/home/jovyan/{path}"],
        volumes={home_volume(hub, user): {"bind": "/home/jovyan", "mode": "rw"}}, environment={"CONTENT": text},
        user="1000:1000", network_disabled=True, remove=True,
    )


def read_home(hub, user: str, path: str) -> str:
    """The file at ``path`` in ``user``'s home, whole (its archive: a container's output can arrive cut)."""
    reader = hub.docker.containers.create(
        USER_IMAGE, ["true"], volumes={home_volume(hub, user): {"bind": "/home/jovyan", "mode": "ro"}}, user="1000:1000",
        network_disabled=True,
    )
    try:
        stream, _ = reader.get_archive(f"/home/jovyan/{path}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            return archive.extractfile(archive.getmembers()[0]).read().decode()
    finally:
        reader.remove(force=True)


def cli(hub, token: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPUHUB_URL": hub.url, "GPUHUB_TOKEN": token, "PYTHONPATH": str(REPO / "platform")}
    return subprocess.run([sys.executable, "-m", "gpuhub.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def submit(hub, user: str, body: dict, token: str | None = None) -> dict:
    r = call(hub, token or token_of(hub, user), "POST", f"users/{user}/jobs", body)
    assert r.status_code == 201, r.text
    return r.json()


def job(hub, user: str, job_id: int) -> dict:
    r = call(hub, OPS, "GET", f"users/{user}/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_state(hub, user: str, job_id: int, states, timeout=120) -> dict:
    states = (states,) if isinstance(states, str) else states
    wait_until(lambda: job(hub, user, job_id)["state"] in states, timeout=timeout, what=f"job {job_id} {states}: {hub.log_tail(30)}")
    return job(hub, user, job_id)


def job_containers(hub) -> list:
    return hub.docker.containers.list(all=True, filters={"label": "org.gpuhub.job"})


def test_a_script_submitted_with_the_cli_runs_on_its_gpu_in_the_home_and_is_recorded(jobs_hub):
    hub = jobs_hub
    token = token_of(hub, "alice")
    r = cli(hub, token, "job", "submit", "--profile", "gpu-1", "--name", "first", "train.py", "--", "--epochs", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("job ") and "queued for alice (gpu-1): first; output in ~/gpuhub-jobs/" in r.stdout
    job_id = int(r.stdout.split()[1])
    running = wait_state(hub, "alice", job_id, ("running", "succeeded"))
    assert len(running["gpus"]) == 1 and running["gpus"][0].startswith("GPU-")
    done = wait_state(hub, "alice", job_id, "succeeded")
    assert done["exit_code"] == 0 and done["started"] and done["ended"] and done["gpu_hours"] > 0
    output = cli(hub, token, "job", "logs", str(job_id))
    assert output.returncode == 0, output.stderr
    assert "args ['--epochs', '3']" in output.stdout and "uid 1000 home /home/jovyan cwd /home/jovyan" in output.stdout
    assert f"devices {running['gpus'][0]}" in output.stdout and "rank - of - nccl -" in output.stdout
    assert read_home(hub, "alice", f"gpuhub-jobs/{job_id}/output.log") == output.stdout  # the whole output, in the home
    assert "alice" not in {user for user, _ in live_allocations(hub).values()}  # its GPU released
    assert not job_containers(hub)  # its container removed
    listed = cli(hub, token, "job", "list")
    assert listed.returncode == 0, listed.stderr
    assert [str(job_id), "alice", "first", "gpu-1", "succeeded"] in [line.split()[:5] for line in listed.stdout.splitlines()]
    totals = call(hub, OPS, "GET", "usage?by=user").json()["totals"]
    assert any(row["user"] == "alice" and row["gpu_seconds"] > 0 for row in totals)  # accounted as any GPU time
    assert f"gpuhub alice:job/{job_id}: job succeeded" in hub.log_tail(400)


def test_a_job_waits_behind_busy_gpus_in_the_servers_line_and_runs_when_one_frees(jobs_hub):
    hub = jobs_hub
    holders = hold_every_whole_gpu(hub, "busy")
    queued = submit(hub, "bob", {"profile": "gpu-1", "command": ["train.py"]})
    wait_until(lambda: any(w["holder"] == f"bob:job/{queued['id']}" for w in call(hub, OPS, "GET", "queue").json()["waiting"]),
               what="the job in the GPU line")
    assert job(hub, "bob", queued["id"])["state"] == "queued"
    hub.stop_server(holders[0])
    done = wait_state(hub, "bob", queued["id"], "succeeded")
    assert done["gpu_hours"] is not None
    for user in holders[1:]:
        hub.stop_server(user)


def test_a_waiting_and_a_running_job_are_cancelled(jobs_hub):
    hub = jobs_hub
    token = token_of(hub, "carol")
    sleeper = submit(hub, "carol", {"profile": "gpu-1", "command": ["sh", "-c", "echo started; sleep 600"]}, token)
    wait_state(hub, "carol", sleeper["id"], "running")
    behind = submit(hub, "carol", {"profile": "gpu-1", "command": ["train.py"]}, token)  # carol's max_gpus is 1: it waits
    wait_until(lambda: any(w["holder"] == f"carol:job/{behind['id']}" for w in call(hub, OPS, "GET", "queue").json()["waiting"]),
               what="the second job in line")
    r = cli(hub, token, "job", "cancel", str(behind["id"]))
    assert r.returncode == 0 and "taken out of its line" in r.stdout, r.stderr
    assert wait_state(hub, "carol", behind["id"], "cancelled")["reason"] == "cancelled by carol"
    assert not any(w["holder"].startswith("carol:") for w in call(hub, OPS, "GET", "queue").json()["waiting"])
    r = call(hub, token, "DELETE", f"users/carol/jobs/{sleeper['id']}")
    assert r.status_code == 202, r.text
    ended = wait_state(hub, "carol", sleeper["id"], "cancelled", timeout=30)
    assert ended["exit_code"] is not None and ended["ended"]
    assert "started" in call(hub, token, "GET", f"users/carol/jobs/{sleeper['id']}/output").text
    assert call(hub, token, "DELETE", f"users/carol/jobs/{sleeper['id']}").status_code == 409  # ended already
    assert "carol" not in {user for user, _ in live_allocations(hub).values()}


def test_a_job_is_stopped_at_its_wall_time(jobs_hub):
    hub = jobs_hub
    slow = submit(hub, "dave", {"profile": "cpu-test", "command": ["sleep", "600"], "wall_time": 60})
    ended = wait_state(hub, "dave", slow["id"], "timed out", timeout=120)
    assert ended["reason"] == "its wall time of 1 min was reached"
    assert ended["gpus"] == [] and ended["gpu_hours"] is None  # a CPU profile holds no GPU


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"profile": "gpu-2", "command": ["train.py"]}, 403, None),  # max_gpus 1: refused now, not after a night in line
        ({"profile": "gpu-1", "command": ["train.py"], "priority": 9}, 400, "priority"),
        ({"profile": "gpu-1", "command": "train.py"}, 400, "command"),
        ({"profile": "gpu-1", "command": ["train.py"], "wall_time": 10**9}, 400, "wall_time"),
        ({"profile": "gpu-1", "command": ["train.py"], "workdir": "../../etc"}, 400, "workdir"),
        ({"profile": "nope", "command": ["train.py"]}, 400, "profile"),
        ({"command": ["x"] * 100_000}, 400, "body"),  # over 64 KiB
        ("[1, 2]", 400, "body"),
        ('{"command": ["a\\ud800"]}', 400, "body"),
    ],
)
def test_bad_jobs_are_refused_naming_why_and_nothing_is_stored(jobs_hub, body, status, field):
    hub = jobs_hub
    token = token_of(hub, "erin")
    r = call(hub, token, "POST", "users/erin/jobs", body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["message"]
    assert call(hub, token, "GET", "users/erin/jobs").json()["jobs"] == []


def test_nobody_submits_or_reads_another_persons_jobs(jobs_hub):
    hub = jobs_hub
    mallory = token_of(hub, "mallory")
    assert call(hub, mallory, "POST", "users/alice/jobs", {"profile": "cpu-test", "command": ["id"]}).status_code == 403
    assert call(hub, mallory, "GET", "users/alice/jobs").status_code == 403
    assert call(hub, mallory, "GET", "jobs").status_code == 403
    assert call(hub, OPS, "GET", "jobs").status_code == 200


def test_two_gpus_get_a_process_each_and_the_nccl_defaults(jobs_hub):
    hub = jobs_hub
    hub.create_user("frank")
    hub.api("POST", "/groups/big", {"users": ["frank"]}, expect=201)  # [[quotas]] group "big": max_gpus 16
    write_home(hub, "frank", "train.py", TRAIN)
    two = submit(hub, "frank", {"profile": "gpu-2", "command": ["train.py"]})
    done = wait_state(hub, "frank", two["id"], ("succeeded", "failed"), timeout=180)
    output = call(hub, OPS, "GET", f"users/frank/jobs/{two['id']}/output").text
    assert done["state"] == "succeeded", output
    assert len(done["gpus"]) == 2
    assert "rank 0 of 2 nccl lo" in output and "rank 1 of 2 nccl lo" in output


def test_a_notebook_runs_through_papermill_with_its_parameters(jobs_hub):
    hub = jobs_hub
    nb = submit(hub, "alice", {"profile": "cpu-test", "command": ["run.ipynb", "-p", "epochs", "5"], "workdir": "nb"})
    done = wait_state(hub, "alice", nb["id"], ("succeeded", "failed"), timeout=180)
    assert done["state"] == "succeeded", call(hub, OPS, "GET", f"users/alice/jobs/{nb['id']}/output").text
    executed = json.loads(read_home(hub, "alice", f"gpuhub-jobs/{nb['id']}/run.ipynb"))
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "trained for 5 epochs" in printed


def test_a_job_runs_on_through_a_hub_kill_9_and_is_recorded(jobs_hub):
    hub = jobs_hub
    long = submit(hub, "gina", {"profile": "gpu-1", "command": ["sh", "-c", "sleep 12; echo finished"]})
    wait_state(hub, "gina", long["id"], "running")
    hub.process.send_signal(signal.SIGKILL)
    hub.process.wait(timeout=30)
    hub.stop()  # the proxy outlives a killed hub
    assert len(job_containers(hub)) == 1  # the job runs on without the hub
    hub.start()
    done = wait_state(hub, "gina", long["id"], "succeeded", timeout=120)
    assert done["gpu_hours"] > 0
    assert call(hub, OPS, "GET", f"users/gina/jobs/{long['id']}/output").text == "finished\n"
    assert "job taken up again after the hub restarted (running)" in hub.log_tail(400)
    assert not job_containers(hub)
