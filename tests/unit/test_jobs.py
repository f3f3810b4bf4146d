"""Batch jobs' rules (``policy.jobs``, ``[jobs]``) as tables: a job request checked field by field
(``web.payloads.job_request``)
(each refusal names its field), the program a job runs (``torchrun`` for several GPUs, ``papermill``
for a notebook), its environment (NCCL defaults for several GPUs), how its end is named, the wall
time a person's groups allow; and the wrapper the container runs, in a real bash: the output kept
in the home and on the container's output, the job's exit status, a stop passed on as SIGTERM."""

import os
import signal
import subprocess
import time

import pytest

from gpuhub.config.schema import parse_settings
from gpuhub.config.sections import SettingsError
from gpuhub.policy.errors import SpawnRefused
from gpuhub.policy.jobs import (
    FAILED, SUCCEEDED, TIMED_OUT, WRAPPER, container_command, ended_state, environment, program,
)
from gpuhub.web.payloads import BadRequest, job_request
from tests.conftest import BASE_SETTINGS

JOBS = '\n[jobs]\nwall_time = 3600\ngroup_wall_time = { "ml-lab" = 86400 }\n'


@pytest.fixture
def settings():
    return parse_settings(BASE_SETTINGS + JOBS)


@pytest.mark.parametrize(
    "data, groups, expected",
    [
        ({"profile": "gpu-1", "command": ["train.py"]}, (), ("gpu-1", ("train.py",), 3600, "train.py", "")),
        ({"profile": "gpu-1", "command": ["sub/train.py", "--epochs", "3"], "wall_time": 600, "name": "mnist", "workdir": "projects/./a"},
         (), ("gpu-1", ("sub/train.py", "--epochs", "3"), 600, "mnist", "projects/a")),
        ({"profile": "cpu-data", "command": ["run.ipynb"], "wall_time": 86400}, ("ml-lab",), ("cpu-data", ("run.ipynb",), 86400, "run.ipynb", "")),
        ({"profile": "gpu-1", "command": ["x.py"], "workdir": "."}, (), ("gpu-1", ("x.py",), 3600, "x.py", "")),
    ],
)
def test_a_job_request_accepted(settings, data, groups, expected):
    r = job_request(settings, data, groups)
    assert (r.profile.name, r.command, r.wall_time, r.name, r.workdir) == expected


@pytest.mark.parametrize(
    "data, groups, field, words",
    [
        ({"profile": "gpu-1", "command": ["x.py"], "gpus": 8}, (), "gpus", "unknown field 'gpus'. Accepted fields: profile, command"),
        ({"profile": "gpu-1"}, (), "command", "not a list of strings"),
        ({"profile": "gpu-1", "command": "train.py"}, (), "command", "not a list of strings"),
        ({"profile": "gpu-1", "command": []}, (), "command", "not a list of strings"),
        ({"profile": "gpu-1", "command": ["x.py", 3]}, (), "command", "not a list of strings"),
        ({"profile": "gpu-1", "command": [" "]}, (), "command", "the first item is empty"),
        ({"profile": "gpu-1", "command": ["x"] * 257}, (), "command", "257 items"),
        ({"profile": "gpu-1", "command": ["x.py", "a" * 4097]}, (), "command", "item 1 is longer"),
        ({"profile": "gpu-1", "command": ["x.py", "a\x00b"]}, (), "command", "holds a NUL"),
        ({"profile": "gpu-1", "command": ["x.py"], "wall_time": 3601}, (), "wall_time", "from 60 to 3600"),
        ({"profile": "gpu-1", "command": ["x.py"], "wall_time": 86401}, ("ml-lab",), "wall_time", "from 60 to 86400"),
        ({"profile": "gpu-1", "command": ["x.py"], "wall_time": 59}, (), "wall_time", "from 60"),
        ({"profile": "gpu-1", "command": ["x.py"], "wall_time": True}, (), "wall_time", "from 60"),
        ({"profile": "gpu-1", "command": ["x.py"], "wall_time": "1h"}, (), "wall_time", "from 60"),
        ({"profile": "gpu-1", "command": ["x.py"], "name": "a\nb"}, (), "name", "no control characters"),
        ({"profile": "gpu-1", "command": ["x.py"], "name": 5}, (), "name", "Accepted"),
        ({"profile": "gpu-1", "command": ["x.py"], "workdir": "../bob"}, (), "workdir", "not inside your home"),
        ({"profile": "gpu-1", "command": ["x.py"], "workdir": "/etc"}, (), "workdir", "not inside your home"),
        ({"profile": "gpu-1", "command": ["x.py"], "workdir": "a/../../b"}, (), "workdir", "not inside your home"),
        ({"profile": "gpu-1", "command": ["x.py"], "workdir": ["a"]}, (), "workdir", "a folder in your home"),
    ],
)
def test_a_job_request_refused_names_the_field(settings, data, groups, field, words):
    with pytest.raises(BadRequest) as e:  # the API's 400 naming the field
        job_request(settings, data, groups)
    assert e.value.field == field and words in e.value.message
    assert str(e.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "data, status, field",
    [
        ({"profile": "nope", "command": ["x.py"]}, 400, "profile"),  # the profiles' own check: no such profile
        ({"profile": 5, "command": ["x.py"]}, 400, "profile"),
        ({"profile": "cpu-data", "command": ["x.py"]}, 403, None),  # a profile for ml-lab only
    ],
)
def test_a_profile_the_person_may_not_use(settings, data, status, field):
    with pytest.raises((BadRequest, SpawnRefused)) as e:
        job_request(settings, data, ())
    assert (400 if isinstance(e.value, BadRequest) else e.value.status_code) == status and getattr(e.value, "field", None) == field


@pytest.mark.parametrize(
    "command, gpus, expected",
    [
        (("train.py", "--epochs", "3"), 1, ["python", "-u", "train.py", "--epochs", "3"]),
        (("train.py",), 0, ["python", "-u", "train.py"]),
        (("train.py", "--lr", "0.1"), 4, ["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", "4", "train.py", "--lr", "0.1"]),
        (("run.ipynb", "-p", "epochs", "5"), 1, ["papermill", "--log-output", "run.ipynb", "/home/jovyan/gpuhub-jobs/7/run.ipynb", "-p", "epochs", "5"]),
        (("nb/run.ipynb",), 2, ["papermill", "--log-output", "nb/run.ipynb", "/home/jovyan/gpuhub-jobs/7/run.ipynb"]),
        (("bash", "run.sh"), 2, ["bash", "run.sh"]),
    ],
)
def test_the_program_a_job_runs(command, gpus, expected):
    assert program(command, gpus, "/home/jovyan/gpuhub-jobs/7") == expected


def test_several_gpus_get_nccl_defaults_and_their_share_of_threads():
    one = environment(7, "projects", 1, 4.0)
    assert one == {"GPUHUB_JOB_ID": "7", "GPUHUB_JOB_DIR": "gpuhub-jobs/7", "GPUHUB_JOB_WORKDIR": "projects", "PYTHONUNBUFFERED": "1"}
    four = environment(7, "", 4, 16.0)
    assert four["NCCL_SOCKET_IFNAME"] == "lo" and four["NCCL_IB_DISABLE"] == "1" and four["OMP_NUM_THREADS"] == "4"
    assert environment(7, "", 4, 2.0)["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize(
    "exit_code, reason, expected",
    [(0, "", SUCCEEDED), (1, "", FAILED), (None, "", FAILED), (143, TIMED_OUT, TIMED_OUT), (0, "cancelled", "cancelled")],
)
def test_how_a_job_ended(exit_code, reason, expected):
    assert ended_state(exit_code, reason) == expected


@pytest.mark.parametrize(
    "text, field",
    [
        ("[jobs]\nwall_time = 10\n", "wall_time"),
        ('[jobs]\ngroup_wall_time = { "x" = "1h" }\n', "group_wall_time"),
        ("[jobs]\nmax_wait = 0\n", "max_wait"),
        ("[jobs]\nwalltime = 100\n", "walltime"),
    ],
)
def test_bad_jobs_settings_name_the_key(text, field):
    with pytest.raises(SettingsError) as e:
        parse_settings(BASE_SETTINGS + text)
    assert field in str(e.value)


def test_a_persons_wall_time_is_the_highest_of_their_groups(settings):
    assert settings.jobs.limit_for(()) == 3600
    assert settings.jobs.limit_for(("ml-lab", "other")) == 86400


# --- the wrapper, in a real bash ---------------------------------------------------------------------
def run_wrapper(tmp_path, argv, stop_after=None):
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "GPUHUB_JOB_DIR": "gpuhub-jobs/7", "GPUHUB_JOB_WORKDIR": "work"}
    proc = subprocess.Popen(["bash", "-c", WRAPPER, "gpuhub-job", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_after is not None:
        time.sleep(stop_after)
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out, (home / "gpuhub-jobs/7/output.log").read_text()


def test_the_wrapper_keeps_the_output_and_the_exit_status(tmp_path):
    status, out, kept = run_wrapper(tmp_path, ["sh", "-c", 'pwd; echo "$1" >&2; exit 3', "sh", "an argument"])
    assert status == 3
    assert kept == f"{tmp_path}/home/work\nan argument\n" and out == kept


def test_the_wrapper_passes_a_stop_on_to_the_job(tmp_path):
    script = "trap 'echo stopping; exit 5' TERM; echo started; while :; do sleep 0.1; done"
    status, _, kept = run_wrapper(tmp_path, ["bash", "-c", script], stop_after=1.0)
    assert status == 5 and kept == "started\nstopping\n"


def test_container_command_is_the_wrapper_around_the_program():
    assert container_command(("train.py",), 1, "/h/gpuhub-jobs/1") == ["bash", "-c", WRAPPER, "gpuhub-job", "python", "-u", "train.py"]
