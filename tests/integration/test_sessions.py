"""Classroom sessions, admission control and GPU-idle reclaim through a real hub on the real engine
(simulated inventory, ``env-only`` exposure, as in ``test_gpu_allocation``).

Covers: the sessions API under RBAC (instructors, another instructor, a plain user, the admin
service); a roster CSV import (added / duplicate / invalid rows) and its idempotent re-import; a bad
file changing nothing; a roster student starting the session in its window on its reserved GPU, a
student not on the roster and a closed session refused with the message; the shared course folder;
30 students prewarmed by the hub-managed ``gpuhub-agent`` with starts bounded by ``[admission]``
(all ready, 0 failures), then stopped (0 containers left); the reclaim with a simulated NVML reading
and a moved clock: warned in the user's JupyterLab, warning withdrawn when the GPU is used, then
stopped, GPU freed, home file intact, a CPU-only server untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import timedelta

import pytest
import requests

from gpuhub.agent.activity import source_for
from gpuhub.agent.core import active_users
from gpuhub.agent.hubapi import HubApi
from gpuhub.agent.reclaim import Reclaimer
from gpuhub.contract import iso
from gpuhub.contract import utcnow
from gpuhub.config.schema import load_settings
from tests.hubprocess import container_of, remove_prefixed, token_of
from tests.integration.test_admin import call, gpuhub_cli, home_file, home_volume
from tests.integration.test_gpu_allocation import WHOLE, env_of, gpu, make_hub, request_server, wait_until
from tests.unit.conftest import FakeClock

PREFIX = "gpuhubtest-class"
OPS = "c" * 48
STARTS = 3  # [admission] max_concurrent_starts
EXTRA = f"""
c.JupyterHub.load_roles.extend([
    {{"name": "test-instructors", "scopes": ["custom:gpuhub:sessions"], "users": ["prof", "prof2"]}},
    {{"name": "test-agent", "scopes": ["custom:gpuhub:admin", "list:users", "read:users", "read:servers", "servers"], "services": ["ops"]}},
])
c.JupyterHub.services.extend([{{"name": "ops", "api_token": "{OPS}"}}])
"""


def class_settings(workdir) -> str:
    return f"""
[admission]
max_concurrent_starts = {STARTS}

[reclaim]
idle_timeout = 3600
session_idle_timeout = 3600
warn_before = 300
check_interval = 1
activity = "file:{workdir}/activity.json"

[culling]
timeout = 0
"""


@pytest.fixture(scope="module")
def class_hub(tmp_path_factory):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path_factory.mktemp("class"), prefix=PREFIX)
    hub.extra_config += EXTRA
    hub.profiles += class_settings(hub.workdir)
    hub.session_settings = "check_interval = 2\nprewarm_concurrency = 8"
    write_activity(hub, {u: 0 for u in WHOLE})
    hub.start()
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def write_activity(hub, utilisation: dict[str, int]) -> None:
    devices = {uuid: {"utilisation": u, "memory": {}} for uuid, u in utilisation.items()}
    (hub.workdir / "activity.json").write_text(json.dumps({"devices": devices}))


def open_window(hours: float = 2) -> dict:
    now = utcnow()
    return {"start": iso(now - timedelta(minutes=5)), "end": iso(now + timedelta(hours=hours))}


def put_session(hub, token, name, body):
    return call(hub, token, "PUT", f"sessions/{name}", body)


def import_roster(hub, token, name, text: bytes):
    return requests.post(
        f"{hub.url}/hub/api/gpuhub/v1/sessions/{name}/roster", data=text,
        headers={"Authorization": f"token {token}", "Content-Type": "text/csv"}, timeout=120,
    )


def test_instructors_make_sessions_and_import_rosters(class_hub):
    hub = class_hub
    prof, prof2, plain = token_of(hub, "prof"), token_of(hub, "prof2"), token_of(hub, "plain")
    body = {"title": "ML 101", "profile": "cpu-test", "windows": [open_window()]}
    assert call(hub, plain, "GET", "sessions").status_code == 403
    assert put_session(hub, plain, "ml101", body).status_code == 403
    r = put_session(hub, prof, "ml101", body)
    assert r.status_code == 201, r.text
    assert r.json()["instructors"] == ["prof"] and r.json()["open_now"] and r.json()["start_link"] == "/hub/spawn?session=ml101"
    # another instructor neither sees nor changes it; the admin service sees it
    assert [s["name"] for s in call(hub, prof2, "GET", "sessions").json()["sessions"]] == []
    assert put_session(hub, prof2, "ml101", body).status_code == 403
    assert call(hub, prof2, "POST", "sessions/ml101/stop").status_code == 404
    assert [s["name"] for s in call(hub, OPS, "GET", "sessions").json()["sessions"]] == ["ml101"]
    # bad bodies: 400 naming the field, nothing saved
    r = put_session(hub, prof, "ml101", {**body, "windows": [{"start": "2026-11-23T11:00Z", "end": "2026-11-23T09:00Z"}]})
    assert r.status_code == 400 and r.json()["field"] == "windows", r.text
    assert call(hub, prof, "GET", "sessions/ml101").json()["windows"] == put_session(hub, prof, "ml101", body).json()["windows"]
    # the roster: good rows, a duplicate, bad rows; a re-import adds nobody
    csv = b"username,name,email\nstu1,Stu One,stu1@uni.edu\nstu2,,\nSTU1,,\nbad name,,\nstu3,,not-mail\nstu4,Stu Four,\n"
    report = import_roster(hub, prof, "ml101", csv).json()
    assert (report["added"], report["already_present"], report["duplicates"], report["invalid"]) == (3, 0, 1, 2), report
    assert report["added_users"] == ["stu1", "stu2", "stu4"]
    assert [r["row"] for r in report["invalid_rows"]] == [5, 6] and report["duplicate_rows"][0]["reason"] == "duplicate of row 2"
    again = import_roster(hub, prof, "ml101", csv).json()
    assert (again["added"], again["already_present"]) == (0, 3)
    # the students exist on the hub and are in the course group
    group = hub.api("GET", "/groups/ml101", expect=200).json()
    assert sorted(group["users"]) == ["stu1", "stu2", "stu4"]
    # a file that is not UTF-8: 400 naming the roster, nothing changed
    r = import_roster(hub, prof, "ml101", "stu9,Zoë\n".encode("latin-1"))
    assert r.status_code == 400 and r.json()["field"] == "roster" and "not UTF-8" in r.json()["message"]
    assert call(hub, prof, "GET", "sessions/ml101").json()["roster_size"] == 3
    assert import_roster(hub, prof2, "ml101", b"x\n").status_code == 404
    # the page's form of the same upload: JSON {"csv": ...}
    r = call(hub, prof, "POST", "sessions/ml101/roster", {"csv": "stu5,Stu Five\n"})
    assert r.status_code == 200 and r.json()["added_users"] == ["stu5"], r.text
    r = call(hub, prof, "POST", "sessions/ml101/roster", {"csv": 3})
    assert r.status_code == 400 and r.json()["field"] == "csv"


def test_the_session_verbs_of_the_cli(class_hub, tmp_path):
    hub = class_hub
    prof = token_of(hub, "prof")
    window = open_window()
    r = gpuhub_cli(hub, "session", "create", "cli101", "--profile", "cpu-test", "--title", "CLI 101",
                   "--window", f"{window['start']}/{window['end']}", "--prewarm-minutes", "5", token=prof)
    assert r.returncode == 0 and "students start it at /hub/spawn?session=cli101" in r.stdout, r.stderr
    roster = tmp_path / "roster.csv"
    roster.write_text("username,email\ncli-a,a@uni.edu\ncli-b,not-mail\n")
    r = gpuhub_cli(hub, "session", "roster", "cli101", str(roster), token=prof)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "1 added, 0 already present, 0 duplicate row(s), 1 invalid row(s)", r.stdout
    assert "row 3: email 'not-mail' is not an email address" in r.stdout
    r = gpuhub_cli(hub, "session", "list", token=prof)
    assert r.returncode == 0 and "cli101" in r.stdout and "open until" in r.stdout
    r = gpuhub_cli(hub, "session", "show", "cli101", token=prof)
    assert r.returncode == 0 and "cli-a" in r.stdout and "stopped" in r.stdout
    # a bad value: the API's message naming the field, exit 1, nothing changed
    r = gpuhub_cli(hub, "session", "create", "cli101", "--profile", "cpu-test", "--window", "tomorrow/later", token=prof)
    assert r.returncode == 1 and "windows" in r.stderr and "is not a date" in r.stderr
    assert "CLI 101" in gpuhub_cli(hub, "session", "show", "cli101", token=prof).stdout
    r = gpuhub_cli(hub, "session", "delete", "cli101", token=prof)
    assert r.returncode == 0 and call(hub, prof, "GET", "sessions/cli101").status_code == 404


def test_roster_window_and_reserved_gpu_at_start(class_hub):
    hub = class_hub
    prof = token_of(hub, "prof")
    r = put_session(hub, prof, "gpulab", {"title": "GPU lab", "profile": "gpu-1", "windows": [open_window()], "devices": ["0"], "shared_folder": True})
    assert r.status_code in (200, 201), r.text
    later = utcnow() + timedelta(days=1)
    r = put_session(hub, prof, "tomorrow", {"profile": "cpu-test", "windows": [{"start": iso(later), "end": iso(later + timedelta(hours=2))}]})
    assert r.status_code == 201, r.text
    for name in ("gpulab", "tomorrow"):
        assert import_roster(hub, prof, name, b"ann\n").json()["added"] == 1
    hub.create_user("outsider")
    # not on the roster: refused with the message, nothing started
    r = hub.api("POST", "/users/outsider/server", {"session": "gpulab"})
    assert r.status_code == 403 and "not on the roster of session 'GPU lab'" in r.json()["message"], r.text
    # on the roster, outside the window: the next start time
    r = hub.api("POST", "/users/ann/server", {"session": "tomorrow"})
    assert r.status_code == 403 and "is not open now. It opens next" in r.json()["message"] and later.strftime("%Y-%m-%d %H:%M") in r.json()["message"]
    # an unknown session
    assert hub.api("POST", "/users/ann/server", {"session": "nope"}).status_code == 400
    # on the roster, in the window: the reserved GPU 0
    assert hub.start_server("ann", {"session": "gpulab"}).status_code in (201, 202)
    container = container_of(hub, "ann")
    assert env_of(container)["NVIDIA_VISIBLE_DEVICES"] == gpu(0) and container.labels["org.gpuhub.session"] == "gpulab"
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/srv/course"]["RW"] is False  # students read the course folder
    # someone else's GPU start stays off the reserved GPU while the window is open
    request_server(hub, "other", "gpu-1")
    hub.wait_ready("other")
    assert env_of(container_of(hub, "other"))["NVIDIA_VISIBLE_DEVICES"] != gpu(0)
    for user in ("ann", "other"):
        hub.stop_server(user)


def test_course_folder_written_by_instructor_read_by_students(class_hub):
    hub = class_hub
    prof = token_of(hub, "prof")
    r = put_session(hub, prof, "course", {"profile": "cpu-test", "windows": [open_window()], "shared_folder": True})
    assert r.status_code == 201, r.text
    import_roster(hub, prof, "course", b"cara\n")
    assert hub.start_server("prof", {"session": "course"}).status_code in (201, 202)
    teacher = container_of(hub, "prof")
    assert teacher.exec_run(["sh", "-c", "echo week1 > /srv/course/notes.txt"]).exit_code == 0
    assert hub.start_server("cara", {"session": "course"}).status_code in (201, 202)
    student = container_of(hub, "cara")
    assert student.exec_run(["cat", "/srv/course/notes.txt"]).output == b"week1\n"
    assert student.exec_run(["sh", "-c", "echo x > /srv/course/mine.txt"]).exit_code != 0  # read-only for students
    for user in ("prof", "cara"):
        hub.stop_server(user)


def test_prewarm_30_students_with_bounded_starts_then_stop_all(class_hub):
    hub = class_hub
    prof = token_of(hub, "prof")
    students = [f"pw{i:02d}" for i in range(30)]
    r = put_session(hub, prof, "burst", {"title": "Burst", "profile": "cpu-test", "windows": [open_window()]})
    assert r.status_code == 201, r.text
    assert import_roster(hub, prof, "burst", "\n".join(students).encode()).json()["added"] == 30
    log_before = len(hub.log_path.read_text())
    r = call(hub, prof, "POST", "sessions/burst/prewarm")
    assert r.status_code == 202, r.text

    def all_ready():
        roster = call(hub, prof, "GET", "sessions/burst").json()["roster"]
        return all(s["server"]["running"] and s["server"]["session"] == "burst" for s in roster)

    wait_until(all_ready, timeout=420, what="30 prewarmed servers")
    for user in students:
        hub.wait_ready(user, timeout=120)
    wait_until(lambda: "session burst: prewarm done" in hub.log_path.read_text()[log_before:], timeout=120, what="the agent's report")
    log = hub.log_path.read_text()[log_before:]
    assert re.search(r"session burst: prewarm done in [\d.]+s: 30 ready, 0 failed", log), log[-3000:]
    turns = [int(n) for n in re.findall(r"start turn taken \((\d+) of at most 3 starting\)", log)]
    assert len(turns) == 30 and max(turns) <= STARTS and max(turns) == STARTS, turns
    wait_until(lambda: call(hub, prof, "GET", "sessions/burst").json()["prewarm_requested"] is None, timeout=30, what="the request marked done")
    # stop all: every session server stopped, files kept, nothing left over
    assert call(hub, prof, "POST", "sessions/burst/stop").status_code == 202
    def session_containers():  # plain listing: a container may vanish between a list and its inspection
        return hub.docker.api.containers(all=True, filters={"label": "org.gpuhub.session=burst"})

    wait_until(lambda: not session_containers(), timeout=180, what="stop all")
    wait_until(lambda: not any(s["server"]["running"] for s in call(hub, prof, "GET", "sessions/burst").json()["roster"]), timeout=60, what="the hub to see them stopped")
    assert len([v for v in hub.volumes() if "-home-pw" in v.name]) == 30  # the homes stay


def test_scheduled_prewarm_before_the_window_and_stop_at_its_end(class_hub):
    hub = class_hub
    prof = token_of(hub, "prof")
    start = utcnow().replace(microsecond=0) + timedelta(seconds=40)
    window = {"start": iso(start), "end": iso(start + timedelta(seconds=30))}
    r = put_session(hub, prof, "timed", {"profile": "cpu-test", "windows": [window], "prewarm_minutes": 1, "stop_at_end": True})
    assert r.status_code == 201 and r.json()["open_now"], r.text  # open from a minute before the window
    assert import_roster(hub, prof, "timed", b"early-bird\n").json()["added"] == 1
    # the agent prewarms in the lead, before the window starts, with nobody asking
    wait_until(lambda: hub.api("GET", "/users/early-bird", expect=200).json()["servers"].get("", {}).get("ready"), timeout=35, what="the scheduled prewarm")
    assert utcnow() < start
    assert container_of(hub, "early-bird").labels["org.gpuhub.session"] == "timed"
    # at the window's end the agent stops it (files kept)
    wait_until(lambda: not hub.api("GET", "/users/early-bird", expect=200).json()["servers"], timeout=90, what="the stop at the end")
    assert utcnow() >= start + timedelta(seconds=30)
    assert "session timed: stop all (its window ended at" in hub.log_path.read_text()


def test_idle_gpu_is_warned_then_reclaimed_with_files_kept(class_hub):
    hub = class_hub
    write_activity(hub, {u: 0 for u in WHOLE})
    request_server(hub, "idler", "gpu-1")
    request_server(hub, "cpu-user", "cpu-test")
    hub.wait_ready("idler")
    hub.wait_ready("cpu-user")
    container = container_of(hub, "idler")
    device = env_of(container)["NVIDIA_VISIBLE_DEVICES"]
    volume = home_volume(container)
    assert container.exec_run(["sh", "-c", "echo precious > /home/jovyan/work.txt"]).exit_code == 0
    settings = load_settings(str(hub.workdir / "settings.toml"))
    clock = FakeClock(utcnow())  # the agent's clock, moved by the test
    reclaimer = Reclaimer(None, settings.reclaim, source_for(settings.reclaim.activity), logging.getLogger("test"))

    def round_at(now):
        clock.now = now
        return asyncio.run(_round(reclaimer, HubApi(f"{hub.url}/hub/api", OPS), clock()))

    start = clock.now
    first = round_at(start)
    assert first["idle"] == ["idler:(default)"] and first["read"] == 1  # the reading went to the hub's usage
    (idle,) = call(hub, OPS, "GET", "usage/idle").json()["idle"]  # held but idle, for the admin
    assert (idle["user"], idle["gpus"], idle["simulated"]) == ("idler", [device], True)
    # 3600 s idle with a 300 s warning: warned at 55 min, in the user's JupyterLab
    done = round_at(start + timedelta(minutes=56))
    assert done["warned"] == ["idler:(default)"], done
    gpus = hub.session.get(f"{hub.user_server_url('idler')}gpuhub/api/v1/gpus", timeout=30).json()
    notice = next(n for n in gpus["notices"] if n["source"] == "reclaim")
    assert notice["message"].startswith("Your GPU has been idle for") and "[SIMULATED GPU reading]" in notice["message"]
    # the GPU is used: the warning is withdrawn and the idle time starts again
    write_activity(hub, {**{u: 0 for u in WHOLE}, device: 85})
    busy_at = start + timedelta(minutes=57)
    assert round_at(busy_at)["busy"] == ["idler:(default)"]
    assert call(hub, OPS, "GET", "usage/idle").json()["idle"] == []  # busy at the latest reading
    mine = token_of(hub, "idler")  # a user reads their own notices
    assert not [n for n in call(hub, mine, "GET", "notices/idler").json()["notices"] if n["source"] == "reclaim"]
    write_activity(hub, {u: 0 for u in WHOLE})
    assert round_at(busy_at + timedelta(minutes=50))["idle"] == ["idler:(default)"]
    # an hour after it was last busy: stopped, its GPU freed, its files kept; the CPU server untouched
    assert round_at(busy_at + timedelta(minutes=60, seconds=1))["stopped"] == ["idler:(default)"]
    wait_until(lambda: not hub.api("GET", "/users/idler", expect=200).json()["servers"], timeout=60, what="the reclaimed server to stop")
    devices = call(hub, OPS, "GET", "gpus").json()["devices"]
    assert not any(h["user"] == "idler" for d in devices for h in d["holders"])
    assert next(d for d in devices if d["uuid"] == device)["state"] == "free"
    assert home_file(hub, volume, "work.txt") == "precious\n"
    # its GPU-hours held against busy (one busy reading of four), from the simulated readings
    usage = call(hub, OPS, "GET", "usage").json()
    (row,) = [t for t in usage["totals"] if t["user"] == "idler"]
    assert usage["readings"] == "simulated" and row["measured_gpu_hours"] > 0 and 0 < row["busy_share"] < 1, usage
    records = call(hub, OPS, "GET", "usage?format=csv&records=true").text.splitlines()
    assert records[0].endswith(",busy_gpu_hours,readings") and any(",idler," in r and r.endswith(",simulated") for r in records[1:])
    assert hub.api("GET", "/users/cpu-user", expect=200).json()["servers"][""]["ready"]
    hub.stop_server("cpu-user")


async def _round(reclaimer, api, now):
    reclaimer.api = api  # a client per event loop (tornado's are bound to the loop that made them)
    return await reclaimer.round(now, await active_users(api))
