"""Bad input (issue 7): fuzzed spawn options, admin API payloads (sessions, notices), roster CSVs and
settings files, 1,000 cases each, against a real hub on the real engine (and the settings loader
in-process, plus a real hub start for a few of the files it refuses).

Every case must be answered below 500, and a refused one (4xx) must change nothing: the state read
before and after it (the hub's REST API, the Docker engine, the hub's database) is the same. A case
that happens to be accepted is undone before the next one. The cases come from hypothesis with
``derandomize=True``: CI runs the same cases every time, and a failure names its input.

The input classes that first found bugs (JSON bodies that are not objects on the spawn API, lone
UTF-16 surrogates in JSON strings, JSON nested 1,000 deep: each answered 500 before gpuhub refused
them) are in the generators and, one case each, in ``test_json_edge_cases_are_refused_and_change_nothing``.

Figures: one line per test in ``build/reliability/fuzz.jsonl``: ``{"target", "cases", "status"}``
(statuses by code; for settings files ``parsed`` and ``rejected: KIND``), for docs/reliability.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import time
import tomllib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings, strategies as st

from gpuhub.contract import iso
from gpuhub.contract import utcnow
from gpuhub.config.schema import Settings, SettingsError, parse_settings
from tests.conftest import BASE_SETTINGS
from tests.hubprocess import USER_IMAGE, HubError, HubProcess, fresh_engine_or_fail
from tests.integration.test_gpu_allocation import wait_until
from tests.reliability.audit import OUT, live_allocations

PREFIX = "gpuhubfuzz"
OPS = "f" * 48  # a service with custom:gpuhub:admin (every session, notices) and users:activity (read notices)
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)

INVENTORY = '[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-000000000000"\nname = "NVIDIA H100 80GB HBM3"\nmemory = "80G"\n'
ROLES = f"""
c.JupyterHub.load_roles.extend([{{
    "name": "fuzz-ops", "scopes": ["custom:gpuhub:admin", "users:activity", "read:users"], "services": ["fuzz-ops"],
}}])
c.JupyterHub.services.extend([{{"name": "fuzz-ops", "api_token": "{OPS}"}}])
"""


def site_settings(inventory_path) -> str:
    """Spawns are refused unless they name ``cpu-open``: the default profile is a GPU one and the
    default quota allows no GPU; ``cpu-staff`` is for a group the fuzzing users are not in."""
    common = f'image = "{USER_IMAGE}"\nmem_limit = "512M"\ncpu_limit = 0.5\nshm_size = "64M"'
    return f'''
[gpus]
inventory = "file:{inventory_path}"
exposure = "env-only"
queue_timeout = 30

[[quotas]]
max_gpus = 0

[[profiles]]
name = "cpu-staff"
{common}
groups = ["staff"]

[[profiles]]
name = "cpu-open"
{common}

[[profiles]]
name = "gpu-1"
{common}
gpus = 1
gpu_mode = "exclusive"
default = true
'''


# --- figures ----------------------------------------------------------------------------------------
FIGURES: dict[str, Counter] = {}


def count(target: str, outcome) -> None:
    FIGURES.setdefault(target, Counter())[str(outcome)] += 1


@pytest.fixture(scope="module", autouse=True)
def fuzz_figures():
    """Writes each test's figures to build/reliability/fuzz.jsonl when the module is done."""
    yield
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "fuzz.jsonl", "a") as f:
        for target, outcomes in FIGURES.items():
            line = {"target": target, "cases": sum(outcomes.values()), "status": dict(sorted(outcomes.items())), "at": time.time()}
            f.write(json.dumps(line) + "\n")
    FIGURES.clear()


# --- the hub ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory):
    fresh_engine_or_fail("reliability", PREFIX)
    workdir = tmp_path_factory.mktemp("fuzzhub")
    (workdir / "inventory.toml").write_text(INVENTORY)
    # the hub's SQLite database in memory (/dev/shm) where there is one: a refused spawn commits several times
    database = (Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir) / f"{PREFIX}-{secrets.token_hex(4)}.sqlite"
    hub = HubProcess(
        workdir, prefix=PREFIX, profiles=site_settings(workdir / "inventory.toml"), extra_config=ROLES, db_url=f"sqlite:///{database}"
    )
    hub.ops = requests.Session()
    hub.ops.headers["Authorization"] = f"token {OPS}"
    try:
        with hub.running():
            yield hub
    finally:
        database.unlink(missing_ok=True)


def gpuhub_api(hub, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
    """One request to gpuhub's API as the admin service, with the body exactly as given."""
    headers = {"Content-Type": content_type} if body is not None else {}
    return hub.ops.request(method, f"{hub.url}/hub/api/gpuhub/v1/{path}", data=body, headers=headers, timeout=60)


def read(hub, path: str) -> dict:
    r = gpuhub_api(hub, "GET", path)
    assert r.status_code == 200, f"GET {path} -> {r.status_code}: {r.text[:300]}\n{hub.log_tail(80)}"
    return r.json()


def dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


FAR = {"start": "2990-01-01T09:00:00Z", "end": "2990-01-01T11:00:00Z"}  # a window that is never open during a run


def ensure_session(hub, name: str, body: dict) -> None:
    r = gpuhub_api(hub, "PUT", f"sessions/{name}", dumps(body))
    assert r.status_code in (200, 201), r.text


def enrol(hub, session: str, *users: str) -> None:
    r = gpuhub_api(hub, "POST", f"sessions/{session}/roster", "\n".join(users).encode(), "text/csv")
    assert r.status_code == 200 and r.json()["invalid"] == 0, r.text


def answer(r: requests.Response) -> str:
    return f"-> {r.status_code}: {r.text[:400]}"


def fault(hub, what, r: requests.Response) -> str:
    """The assertion message of a case that went wrong: the input, the answer, the hub's log."""
    return f"{what!r:.600} {answer(r)}\n--- hub log ---\n{hub.log_tail(80)}"


# --- shared value strategies --------------------------------------------------------------------------
# Text from hypothesis' default alphabet (every Unicode category but lone surrogates), and lone
# surrogates, which JSON allows ("\ud800") and Unicode does not. JSON numbers beyond what Python
# prints are in the raw bodies.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=30)
    | st.sampled_from(["\ud800", "x\udfffy"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


def weighted(*strategies):
    """One of ``strategies``, each as often as it is listed (``st.one_of`` drops repeats)."""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


def is_json(data: bytes) -> bool:
    try:
        json.loads(data.strip().decode("utf-8", "replace"))
        return True
    except ValueError:
        return False


# bodies that are not JSON at all (empty and JSON non-objects are edge cases: they mean other things)
not_json = st.binary(min_size=1, max_size=40).filter(lambda b: not is_json(b))
RAW_BODIES = [
    b'{"profile": "cpu-open"',                       # cut short
    b'{"profile": 1' + b"0" * 5000 + b"}",           # a number Python will not read (over 4,300 digits)
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',    # JSON's non-numbers, which Python reads
    b"\xef\xbb\xbf{}",                               # a UTF-8 byte order mark
    '{"profile": "cpu-open"}'.encode("utf-16"),      # not UTF-8
    b"{" + b" " * 70_000 + b"}",                     # larger than the admin API's 64 KiB
    b"[" * 500,                                      # deep, under the parser's recursion limit
    b"[" * 1000,                                     # deeper than the parser's recursion limit
]
raw_bodies = st.sampled_from(RAW_BODIES) | not_json


# --- 1. spawn options -----------------------------------------------------------------------------------
SPAWNER, RAW_SPAWNER = "fuzz-spawner", "fuzz-raw"
NOTHING = {"servers": {}, "containers": [], "allocations": []}


@pytest.fixture(scope="module")
def spawn_users(fuzz_hub):
    """The spawning users, each on the roster of a session that is not open (a later window)."""
    hub = fuzz_hub
    for user in (SPAWNER, RAW_SPAWNER):
        hub.create_user(user)
    ensure_session(hub, "fuzz-later", {"profile": "cpu-open", "windows": [FAR]})
    enrol(hub, "fuzz-later", SPAWNER, RAW_SPAWNER)
    now = utcnow()
    ensure_session(hub, "fuzz-open", {"profile": "cpu-open", "windows": [{"start": iso(now - timedelta(hours=1)), "end": iso(now + timedelta(days=1))}]})
    return hub


def spawn_state(hub, user: str) -> dict:
    """The user's servers (the hub's view), the run's containers (the engine's), live GPU allocations (the database's)."""
    return {
        "servers": hub.api("GET", f"/users/{user}", expect=200).json()["servers"],
        "containers": sorted(c["Names"][0] for c in hub.docker.api.containers(all=True, filters={"name": f"^{PREFIX}-"})),
        "allocations": live_allocations(hub),
    }


def spawn_case(hub, user: str, body: bytes | None, target: str, before: dict) -> None:
    r = hub.session.post(f"{hub.url}/hub/api/users/{user}/server", data=body, timeout=60)
    count(target, r.status_code)
    assert r.status_code < 500, fault(hub, body, r)
    if r.status_code >= 400:
        # refused by gpuhub's own checks with the reason, not by an exception JupyterHub turned into a 400
        assert r.json().get("message") != "Invalid user options", fault(hub, body, r)
        after = spawn_state(hub, user)
        assert after == before, f"{body!r:.300} {answer(r)} changed {before} to {after}"
        return
    hub.wait_ready(user, timeout=120)  # accepted: a valid request; undo it before the next case
    hub.stop_server(user)
    wait_until(lambda: spawn_state(hub, user) == before, timeout=60, what="the accepted server and its container to be gone")


# the one name that starts a server comes last: hypothesis draws a list's first elements most often
profile_values = st.sampled_from(["nope", "", "CPU-OPEN", "cpu-open ", "../gpu-1", "cpu-open\x00", "gpu-1", "cpu-staff", "cpu-open"]) | json_values
image_values = st.sampled_from([USER_IMAGE, "", "debian:bookworm", USER_IMAGE + "x", "gpuhub/pytorch-cuda", "../../etc", None]) | json_values
session_values = st.sampled_from(["fuzz-later", "fuzz-open", "nope", "", "FUZZ-LATER", "fuzz-later/x", None]) | json_values
unknown_options = st.dictionaries(st.text(max_size=12).filter(lambda k: k not in ("profile", "image", "session")), json_values, max_size=2)
spawn_objects = st.builds(
    lambda known, unknown: dumps({**known, **unknown}),
    st.fixed_dictionaries({}, optional={"profile": profile_values, "image": image_values, "session": session_values, "gpus": json_values}),
    unknown_options,
)


def test_fuzzed_spawn_options_never_5xx_and_a_refused_one_changes_nothing(spawn_users):
    """Mostly JSON objects of the known keys (profile, image, session) with values of every JSON type,
    and unknown keys; some JSON values that are not objects, some bodies that are not JSON. Rarely
    valid (only ``cpu-open`` starts)."""
    hub = spawn_users
    assert spawn_state(hub, SPAWNER) == NOTHING

    @FUZZ
    @given(body=weighted(spawn_objects, spawn_objects, spawn_objects, raw_bodies, json_values.map(dumps)))
    @example(body=dumps({"profile": "cpu-open"}))  # the valid request: accepted, then undone
    @example(body=dumps({"profile": "gpu-1"}))     # over the GPU quota: refused before anything is allocated
    @example(body=dumps({"session": "fuzz-later"}))  # on its roster, outside its window
    @example(body=dumps({"session": "fuzz-open"}))   # open, not on its roster
    def case(body):
        spawn_case(hub, SPAWNER, body, "spawn options", NOTHING)

    case()
    time.sleep(1)  # nothing started late
    assert spawn_state(hub, SPAWNER) == NOTHING


# --- 2. admin API payloads: sessions ----------------------------------------------------------------
KEPT = {"title": "Kept", "profile": "cpu-open", "windows": [FAR]}
TIMES = [
    "2990-01-01T09:00Z", "2990-01-01T11:00:00Z", "2990-01-02", "2990-01-01T10:00+05:00", "2026-13-01", "tomorrow",
    "0001-01-01", "9999-12-31T23:59:59Z", "1969-12-31", "", "2990-02-30",
]
window_values = st.fixed_dictionaries({"start": st.sampled_from(TIMES) | st.text(max_size=25), "end": st.sampled_from(TIMES)}) | json_values
GOOD_WINDOWS = [FAR, {"start": "2990-02-01", "end": "2990-02-02"}, {"start": "2990-03-01T10:00+05:00", "end": "2990-03-01T12:00Z"}]


def mostly(valid, invalid):
    """A field's values: valid three times in five, else an invalid one of its kind or any JSON value
    (a case gets past the fields checked first often enough to reach the later ones)."""
    return weighted(valid, valid, valid, invalid, json_values)


session_fields = {
    "title": mostly(st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=40), st.text(max_size=40) | st.just("x" * 201)),
    "group": mostly(st.sampled_from(["fuzz-group", "Fuzz Group", ""]), st.sampled_from(["a/b", "<b>", "x" * 256, "tab\t"])),
    "profile": mostly(st.sampled_from(["cpu-open", "gpu-1", "cpu-staff"]), st.sampled_from(["nope", "", "CPU-OPEN", "cpu-open "])),
    "windows": mostly(st.lists(st.sampled_from(GOOD_WINDOWS), min_size=1, max_size=2, unique_by=lambda w: w["start"]), st.lists(window_values, max_size=3)),
    "devices": mostly(
        st.lists(st.sampled_from(["0", "GPU-00000000-0000-0000-0000-000000000000"]), max_size=1),
        st.lists(st.sampled_from(["1", "0:0", "MIG-x", 0, ""]) | json_values, min_size=1, max_size=3),
    ),
    "datasets": mostly(st.just([]), st.lists(st.sampled_from(["refdata", "nope", ""]) | json_values, min_size=1, max_size=2)),
    "shared_folder": mostly(st.booleans(), st.sampled_from([0, 1, "true", None])),
    "prewarm_minutes": mostly(st.integers(0, 240), st.integers(-(2**70), -1) | st.integers(241, 2**70) | st.sampled_from([1.5, True, "5"])),
    "stop_at_end": mostly(st.booleans(), st.sampled_from([0, 1, "false", None])),
    "instructors": mostly(st.lists(st.sampled_from(["prof", "ta"]), max_size=2), st.lists(st.sampled_from(["", "a/b", "x" * 256]) | st.text(max_size=12), min_size=1, max_size=3)),
}
session_objects = st.builds(
    lambda known, unknown: dumps({**known, **unknown}),
    st.fixed_dictionaries(
        {"profile": session_fields["profile"], "windows": session_fields["windows"]},
        optional={k: v for k, v in session_fields.items() if k not in ("profile", "windows")},
    ),
    weighted(st.just({}), st.just({}), st.just({}), st.dictionaries(st.text(max_size=12).filter(lambda k: k not in session_fields), json_values, min_size=1, max_size=1)),
)
good_session_names = st.sampled_from(["fuzz-new", "fuzz-kept", "fuzz-2"])
session_names = weighted(
    good_session_names, good_session_names, good_session_names,
    st.sampled_from(["Fuzz-New", "-fuzz", "fuzz_new", "x" * 64, "ünï", "fuzz new", "a/b", ".."]), st.text(min_size=1, max_size=20),
)


def sessions_list(hub) -> list:
    return read(hub, "sessions")["sessions"]


def assert_error_names_the_field(hub, what, r) -> None:
    """A refusal other than 403, 404 or 405 is gpuhub's JSON error naming the field (a 409, a device
    reserved by another session then, names it in its message)."""
    if r.status_code in (403, 404, 405):
        return
    error = r.json()
    assert set(error) == {"status", "error", "field", "message"} and error["status"] == r.status_code, fault(hub, what, r)
    assert error["field"] or (r.status_code == 409 and error["message"].startswith("devices:")), fault(hub, what, r)


def session_case(hub, name: str, body: bytes, target: str, before: list) -> list:
    """PUT one body; the sessions list afterwards (a case that was accepted is undone first)."""
    path = f"sessions/{requests.utils.quote(name, safe='')}"
    r = gpuhub_api(hub, "PUT", path, body)
    count(target, r.status_code)
    assert r.status_code < 500, fault(hub, (name, body), r)
    if r.status_code >= 400:
        assert_error_names_the_field(hub, (name, body), r)
        after = sessions_list(hub)
        assert after == before, f"{(name, body)!r:.300} {answer(r)} changed the sessions"
        return after
    if name == "fuzz-kept":
        ensure_session(hub, name, KEPT)
    else:
        assert gpuhub_api(hub, "DELETE", path).status_code == 204
    return sessions_list(hub)


def test_fuzzed_session_payloads_never_5xx_and_a_refused_one_changes_nothing(fuzz_hub):
    """PUT .../sessions/NAME (a new name, an existing session, bad names) with bodies of the session
    fields, values of every JSON type, unknown fields, and bodies that are not JSON objects."""
    hub = fuzz_hub
    ensure_session(hub, "fuzz-kept", KEPT)
    known = [sessions_list(hub)]

    @FUZZ
    @given(name=session_names, body=weighted(session_objects, session_objects, session_objects, json_values.map(dumps), raw_bodies))
    @example(name="fuzz-new", body=dumps({"profile": "gpu-1", "windows": [FAR], "devices": ["0"], "prewarm_minutes": 240}))
    @example(name="fuzz-kept", body=dumps({**KEPT, "title": "Changed"}))
    def case(name, body):
        known[0] = session_case(hub, name, body, "session payloads", known[0])

    case()


# --- 2. admin API payloads: notices -------------------------------------------------------------------
NOTICED = "fuzz-noticed"
notice_fields = {
    "source": mostly(st.sampled_from(["reclaim", "session"]), st.sampled_from(["quota", "", "RECLAIM"])),
    "level": mostly(st.sampled_from(["info", "warn", "stop"]), st.sampled_from(["error", "", "WARN"])),
    "message": mostly(st.text(min_size=1, max_size=40) | st.just("x" * 1000), st.sampled_from(["x" * 1001, ""])),
}
notice_objects = st.builds(
    lambda known, unknown: dumps({**known, **unknown}),
    weighted(*[st.fixed_dictionaries(notice_fields)] * 3, st.fixed_dictionaries({}, optional=notice_fields)),
    weighted(st.just({}), st.just({}), st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=1)),
)


def notices_of(hub, user: str) -> list:
    return read(hub, f"notices/{user}")["notices"]


def test_fuzzed_notice_payloads_never_5xx_and_a_refused_one_changes_nothing(fuzz_hub):
    """POST .../notices/NAME (what the agent posts to a user's JupyterLab) with fuzzed bodies."""
    hub = fuzz_hub
    hub.create_user(NOTICED)
    assert notices_of(hub, NOTICED) == []

    @FUZZ
    @given(
        name=weighted(st.just(NOTICED), st.just(NOTICED), st.just(NOTICED), st.sampled_from(["a/b", "<b>", "x" * 256]), st.text(min_size=1, max_size=12)),
        body=weighted(notice_objects, notice_objects, notice_objects, json_values.map(dumps), raw_bodies),
    )
    @example(name=NOTICED, body=dumps({"source": "reclaim", "level": "warn", "message": "Your GPU is idle"}))
    def case(name, body):
        path = f"notices/{requests.utils.quote(name, safe='')}"
        r = gpuhub_api(hub, "POST", path, body)
        count("notice payloads", r.status_code)
        assert r.status_code < 500, fault(hub, (name, body), r)
        if r.status_code >= 400:
            assert_error_names_the_field(hub, (name, body), r)
        else:  # accepted: take it back
            source = json.loads(body)["source"]
            assert gpuhub_api(hub, "DELETE", f"{path}?source={source}").status_code == 204
        assert notices_of(hub, NOTICED) == [], f"{(name, body)!r:.300} {answer(r)} left a notice"

    case()


# --- 2b. batch job specs ------------------------------------------------------------------------------
JOBBER = "fuzz-jobber"
job_fields = {
    # gpu-1 passes the fields' checks and is refused by the quota (max_gpus 0), cpu-staff by its group:
    # no fuzzed job ever runs; every field is checked before the quota
    "profile": mostly(st.sampled_from(["gpu-1", "cpu-staff"]), st.sampled_from(["nope", "", "GPU-1", "gpu-1 "])),
    "command": mostly(
        st.lists(st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=20), min_size=1, max_size=4),
        st.lists(st.sampled_from(["", " ", "a\x00b", "x" * 4097]) | json_values, min_size=0, max_size=3) | st.just(["x"] * 257),
    ),
    "wall_time": mostly(st.integers(60, 86400), st.integers(-(2**70), 59) | st.integers(86401, 2**70) | st.sampled_from([1.5, True, "3600"])),
    "name": mostly(st.text(st.characters(exclude_categories=["Cc", "Cs"], exclude_characters='<>&"'), min_size=1, max_size=40),
                   st.sampled_from(["a\nb", "<b>", "x" * 101, 5])),
    "workdir": mostly(st.sampled_from(["", "projects", "a/b/../c", "."]), st.sampled_from(["..", "../x", "/etc", "a/../../b", "x" * 1025])),
}
job_objects = st.builds(
    lambda known, unknown: dumps({**known, **unknown}),
    st.fixed_dictionaries({"command": job_fields["command"]}, optional={k: v for k, v in job_fields.items() if k != "command"}),
    weighted(st.just({}), st.just({}), st.just({}), st.dictionaries(st.text(max_size=12).filter(lambda k: k not in job_fields), json_values, min_size=1, max_size=1)),
)


def test_fuzzed_job_specs_never_5xx_and_a_refused_one_stores_nothing(fuzz_hub):
    """POST .../users/NAME/jobs with fuzzed specs (every field, values of every JSON type, unknown
    fields, bodies that are not JSON objects): a 4xx naming the field, and no job stored."""
    hub = fuzz_hub
    hub.create_user(JOBBER)
    path = f"users/{JOBBER}/jobs"
    assert read(hub, path)["jobs"] == []

    @FUZZ
    @given(body=weighted(job_objects, job_objects, job_objects, json_values.map(dumps), raw_bodies))
    @example(body=dumps({"profile": "gpu-1", "command": ["train.py", "--epochs", "3"], "wall_time": 3600}))
    @example(body=dumps({"profile": "gpu-1", "command": ["train.py"], "gpus": 8}))
    def case(body):
        r = gpuhub_api(hub, "POST", path, body)
        count("job specs", r.status_code)
        assert 400 <= r.status_code < 500, fault(hub, body, r)
        assert_error_names_the_field(hub, body, r)
        assert read(hub, path)["jobs"] == [], f"{body!r:.300} {answer(r)} stored a job"

    case()


# --- 3. roster CSVs -------------------------------------------------------------------------------------
ROSTERED = "fuzz-roster"
USERNAMES = [f"fz{i:02d}" for i in range(40)] + ["FZ01", " fz02 ", "fz 03", "a/b", "<b>x</b>", "#fz", "", "user", "ünï", "x" * 256]
EMAILS = ["fz@uni.edu", "not-mail", "a@b", "a@b.c", "<a@b.c>", "x" * 250 + "@uni.edu", ""]
NAMES = ["Ann", "Zoë Ø", "x" * 201, "tab\there", "\"quoted\"", ""]
HEADERS = [
    ["username", "name", "email"], ["Email", "User"], ["login"], ["username", "phone"], ["username", "username"],
    ["user", "name", "email", "x"], ["username"] + [f"c{i}" for i in range(40)], ["username", "", "email"],
]
first_cell = weighted(st.sampled_from(USERNAMES), st.sampled_from(USERNAMES), st.text(max_size=20))
cell = st.sampled_from(USERNAMES) | st.sampled_from(EMAILS) | st.sampled_from(NAMES) | st.text(max_size=20)
roster_row = st.builds(lambda first, rest: [first, *rest], first_cell, st.lists(cell, max_size=3))
roster_rows = st.lists(weighted(roster_row, roster_row, roster_row, st.sampled_from([[], ["# a comment"], ["  ", ""]])), max_size=20)


@st.composite
def roster_bodies(draw) -> tuple[str, bytes]:
    """(content type, body): a CSV as text/csv, or as the page's JSON {"csv": ...}; with a header row
    or not, quoted or not, any line ending, and byte-level damage (BOM, bad UTF-8, NUL, Latin-1)."""
    header = draw(st.none() | st.sampled_from(HEADERS))
    lines = ([header] if header else []) + draw(roster_rows)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if draw(st.booleans()):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=newline).writerows(lines)
        text = buffer.getvalue()
    else:  # written by hand: quotes and commas in cells are not escaped
        text = newline.join(",".join(r) for r in lines) + draw(st.sampled_from(["", newline]))
    form = draw(st.sampled_from(["csv", "csv", "csv", "json", "json-not-text"]))
    if form == "json":
        return "application/json", dumps({"csv": text})
    if form == "json-not-text":
        return "application/json", dumps({"csv": draw(json_values)})
    data = text.encode()
    damage = draw(st.sampled_from(["none", "none", "none", "bom", "bad-utf8", "nul", "latin-1", "surrogate"]))
    at = draw(st.integers(0, len(data)))
    inserted = {"bad-utf8": b"\xff", "nul": b"\x00", "surrogate": b"\xed\xa0\x80"}.get(damage)
    if inserted:
        data = data[:at] + inserted + data[at:]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "latin-1":
        data = text.encode("latin-1", "replace")
    return "text/csv", data


def counted_rows(data: bytes) -> int:
    """The rows an import must account for (the documented format): non-blank CSV rows not starting
    with '#', less a first row that names the columns (username, user or login)."""
    rows = [r for r in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")) if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if rows and {"username", "user", "login"} & {c.strip().lower() for c in rows[0]}:
        rows = rows[1:]
    return len(rows)


def roster_of(hub, session: str) -> list:
    return read(hub, f"sessions/{session}")["roster"]


def roster_case(hub, session: str, content_type: str, body: bytes, target: str, before: list) -> list:
    """POST one roster file; the roster afterwards."""
    r = gpuhub_api(hub, "POST", f"sessions/{session}/roster", body, content_type)
    count(target, r.status_code)
    assert r.status_code < 500, fault(hub, body, r)
    after = roster_of(hub, session)
    if r.status_code >= 400:
        assert_error_names_the_field(hub, body, r)
        assert after == before, f"{body!r:.300} {answer(r)} changed the roster"
        return after
    report = r.json()
    csv_bytes = json.loads(body)["csv"].encode() if content_type == "application/json" else body
    accounted = report["added"] + report["already_present"] + report["duplicates"] + report["invalid"]
    assert accounted == counted_rows(csv_bytes), f"{body!r:.300}: the report accounts for {accounted} rows: {report}"
    had, has = {s["username"] for s in before}, {s["username"] for s in after}
    assert has == had | set(report["added_users"]) and len(has) == len(had) + report["added"], (body, report)
    assert set(report["present_users"]) <= had, (body, report)
    return after


def test_fuzzed_roster_csvs_never_5xx_and_a_refused_one_changes_nothing(fuzz_hub):
    """POST .../sessions/NAME/roster: at most 20 rows; an accepted file's report accounts for every row."""
    hub = fuzz_hub
    ensure_session(hub, ROSTERED, {"profile": "cpu-open", "windows": [FAR]})
    known = [roster_of(hub, ROSTERED)]

    @FUZZ
    @given(upload=roster_bodies())
    @example(upload=("text/csv", b"fz00\n" * (4 * 1024 * 1024 // 5 + 1)))  # over the 4 MiB limit
    @example(upload=("text/csv", b"fz00," + b"x" * 140_000 + b"\n"))     # a field over the CSV reader's limit
    @example(upload=("text/csv", b"fz00" + b"," * 5000 + b"\n"))          # 5,001 columns
    @example(upload=("text/csv", b"username,name\nfz00,Ann\nFZ00,\nbad/name,\n"))
    def case(upload):
        content_type, body = upload
        known[0] = roster_case(hub, ROSTERED, content_type, body, "roster csv", known[0])

    case()


# --- JSON edge cases: one explicit case per input class that once answered 500 --------------------------
SURROGATE = "\\ud800"  # as JSON writes it: json.loads gives a str with a lone surrogate


def edge(target, body, case_id=None):
    return pytest.param(target, body, id=case_id or f"{target}-{body[:24]!r}")


EDGE_CASES = [
    *(edge("spawn", b) for b in (b"[]", b"[1, 2]", b'"abc"', b"0", b"1.5", b"true", b"1e400")),
    edge("spawn", b"null", case_id="spawn-null body"),
    edge("spawn", b"", case_id="spawn-empty body"),
    edge("spawn", b"[" * 5000, case_id="spawn-nested 5000"),
    edge("spawn", f'{{"session": "{SURROGATE}"}}'.encode(), "spawn-surrogate session"),
    edge("spawn", f'{{"profile": "{SURROGATE}"}}'.encode(), case_id="spawn-surrogate profile"),
    edge("spawn", f'{{"profile": "gpu-1", "image": "{SURROGATE}"}}'.encode(), case_id="spawn-surrogate image"),
    edge("spawn", f'{{"{SURROGATE}": 1}}'.encode(), case_id="spawn-surrogate key"),
    edge("session", f'{{"profile": "cpu-open", "windows": [{json.dumps(FAR)}], "group": "{SURROGATE}"}}'.encode(), "session-surrogate group"),
    edge("session", f'{{"profile": "cpu-open", "windows": [{json.dumps(FAR)}], "title": "{SURROGATE}"}}'.encode(), case_id="session-surrogate title"),
    edge("session", f'{{"profile": "cpu-open", "windows": [{json.dumps(FAR)}], "instructors": ["{SURROGATE}"]}}'.encode(), case_id="session-surrogate instructor"),
    edge("session", f'{{"profile": "cpu-open", "windows": [{{"start": "{SURROGATE}", "end": "x"}}]}}'.encode(), case_id="session-surrogate window"),
    edge("session", b"[" * 1000, "session-nested 1000"),
    edge("notice", b"[" * 1000, "notice-nested 1000"),
    edge("notice", f'{{"source": "{SURROGATE}", "level": "warn", "message": "m"}}'.encode(), case_id="notice-surrogate source"),
    edge("notice", f'{{"source": "reclaim", "level": "warn", "message": "{SURROGATE}"}}'.encode(), case_id="notice-surrogate message"),
    edge("roster-json", f'{{"csv": "{SURROGATE}"}}'.encode(), "roster-surrogate csv"),
    edge("roster-json", b'{"csv": ' + b"[" * 1000 + b"}", "roster-nested 1000"),
    edge("roster-csv", b"fz01,\xed\xa0\x80\n", case_id="roster-csv encoded surrogate"),
]


@pytest.mark.parametrize("target, body", EDGE_CASES)
def test_json_edge_cases_are_refused_and_change_nothing(spawn_users, target, body):
    """One case of each input class that once answered 500, with the same checks as the fuzz."""
    hub = spawn_users
    name = "json edge cases"
    if target == "spawn":
        # a refused request first: an empty or null body means "the options of the last request"
        assert hub.api("POST", f"/users/{RAW_SPAWNER}/server", {"profile": "nope"}).status_code == 400
        session = read(hub, "sessions/fuzz-later")  # RAW_SPAWNER is on its roster
        spawn_case(hub, RAW_SPAWNER, body, name, NOTHING)
        assert read(hub, "sessions/fuzz-later") == session
    elif target == "session":
        session_case(hub, "fuzz-edge", body, name, sessions_list(hub))
    elif target == "notice":
        hub.create_user(NOTICED)
        r = gpuhub_api(hub, "POST", f"notices/{NOTICED}", body)
        count(name, r.status_code)
        assert r.status_code < 500, fault(hub, body, r)
        if r.status_code < 400:
            gpuhub_api(hub, "DELETE", f"notices/{NOTICED}?source=reclaim")
        assert notices_of(hub, NOTICED) == []
    else:
        ensure_session(hub, ROSTERED, {"profile": "cpu-open", "windows": [FAR]})
        content_type = "application/json" if target == "roster-json" else "text/csv"
        roster_case(hub, ROSTERED, content_type, body, name, roster_of(hub, ROSTERED))


# --- 4. settings files ------------------------------------------------------------------------------------
BASE_LINES = BASE_SETTINGS.strip("\n").split("\n")
KEY_LINES = [i for i, line in enumerate(BASE_LINES) if re.match(r"^\w+ = ", line)]
TOML_VALUES = [
    '"4Q"', '"-1G"', '"0"', '"1e9G"', '"4g"', '"4 G"', '"4.5G"', "-1", "0", "1e309", "9" * 30, "-9223372036854775809",
    "3.5", "nan", "inf", "-inf", "true", "[]", "[1, 2]", '["x"]', '[["x"]]', "{}", "{a = 1}", "1979-05-27T07:32:00Z",
    "07:32:00", '""', '"host"', '"/var/run/docker.sock"', '"../x"', '"ü"', '"\\u0000"', '"x"', '"gpuhub/pytorch-cuda:cpu"',
]
toml_value = st.sampled_from(TOML_VALUES) | st.integers(-(2**70), 2**70).map(str) | st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False))
bare_keys = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
key_names = weighted(  # bare keys, and quoted ones of any text (TOML allows both; other text is broken TOML)
    bare_keys, bare_keys, bare_keys,
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=8).map(lambda k: json.dumps(k, ensure_ascii=False)),
    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8),
)
line_index = st.integers(0, len(BASE_LINES) - 1)
set_value = st.tuples(st.just("set"), st.sampled_from(KEY_LINES), toml_value)
add_key = st.tuples(st.just("add key"), line_index, key_names, toml_value)
mutations = weighted(  # mostly values and keys: broken TOML alone would stop at the parser
    set_value, set_value, set_value, add_key, add_key,
    st.tuples(st.just("rename"), st.sampled_from(KEY_LINES), key_names),
    st.tuples(st.just("drop"), line_index),
    st.tuples(st.just("duplicate"), line_index),
    st.tuples(st.just("add table"), line_index, key_names, st.booleans()),
    st.tuples(st.just("garble"), line_index, st.integers(0, 40), st.text(max_size=6)),
    st.tuples(st.just("cut"), st.integers(0, len(BASE_SETTINGS))),
)


def mutate(lines: list[str], mutation: tuple) -> list[str]:
    op, *args = mutation
    lines = list(lines)
    if op == "cut":
        return "\n".join(lines)[: args[0]].split("\n")
    if not lines:
        return lines
    i = min(args[0], len(lines) - 1)
    if op == "drop":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "set" and " = " in lines[i]:
        lines[i] = lines[i].split(" = ", 1)[0] + " = " + args[1]
    elif op == "rename" and " = " in lines[i]:
        lines[i] = args[1] + " = " + lines[i].split(" = ", 1)[1]
    elif op == "add key":
        lines.insert(i + 1, f"{args[1]} = {args[2]}")
    elif op == "add table":
        lines.insert(i + 1, f"[[{args[1]}]]" if args[2] else f"[{args[1]}]")
    elif op == "garble":
        lines[i] = lines[i][: args[1]] + args[2] + lines[i][args[1]:]
    return lines


def mutated(mutations_in_order) -> str:
    lines = BASE_LINES
    for m in mutations_in_order:
        lines = mutate(lines, m)
    return "\n".join(lines) + "\n"


settings_texts = st.lists(mutations, min_size=1, max_size=2).map(mutated)


SECTIONS = set(Settings.class_trait_names())


def kind_of_refusal(text: str, message: str) -> str:
    """'toml' or 'unknown key' or 'value'; AssertionError unless the message names a field of the file
    (its first part is a table of the schema or a key the file has) or says the file is not TOML."""
    assert message.startswith("settings: "), message
    rest = message[len("settings: "):]
    if rest.startswith("not valid TOML: "):
        return "toml"
    fields = SECTIONS | set(tomllib.loads(text))
    assert any(rest.startswith(f"{field}{after}") for field in fields for after in (".", "[", ":", " ")), f"names no field: {message}"
    return "unknown key" if ": unknown key." in rest else "value"


def refused_at_start(workdir, text: str) -> str:
    """Start a real hub on ``text`` as its settings file: it must exit non-zero. Returns its log."""
    bad = HubProcess(workdir, prefix=f"{PREFIX}-bad")
    bad.write_config()
    (bad.workdir / "settings.toml").write_bytes(text.encode())
    with pytest.raises(HubError):
        bad.start(timeout=30)
    bad.stop()
    assert bad.process.returncode not in (0, None), bad.log_tail()
    return bad.log_path.read_text()


def test_fuzzed_settings_files_are_parsed_or_refused_naming_the_field(tmp_path):
    """Mutations of the unit tests' valid settings file: dropped, duplicated, renamed and added keys and
    tables, values of the wrong type, sign or size, bad units, broken TOML, any Unicode. Each parses
    or raises SettingsError naming the field (never another exception); a real hub refuses to start
    on one file of each kind of refusal with the same message."""
    first_of_kind: dict[str, str] = {}

    @FUZZ
    @given(text=settings_texts)
    @example(text=BASE_SETTINGS.replace('mem_limit = "4G"', 'mem_limit = "4Q"'))
    @example(text=BASE_SETTINGS.replace("[spawner]\n", "[spawner]\nuid = 0\n"))  # root
    def case(text):
        try:
            parse_settings(text)
        except SettingsError as e:
            message = str(e)
            assert "Traceback" not in message and e.__cause__ is None, message
            kind = kind_of_refusal(text, message)
            count("settings files", f"rejected: {kind}")
            if "\r" not in text:  # the hub reads the file with universal newlines
                first_of_kind.setdefault(kind, text)
        else:
            count("settings files", "parsed")

    case()
    assert set(first_of_kind) == {"toml", "unknown key", "value"}, first_of_kind
    for i, (kind, text) in enumerate(sorted(first_of_kind.items())):
        path = tmp_path / f"bad{i}" / "settings.toml"
        with pytest.raises(SettingsError) as expected:
            parse_settings(text, str(path))
        log = refused_at_start(path.parent, text)
        assert "the hub does not start: bad settings file" in log and str(expected.value) in log, (kind, str(expected.value), log[-2000:])
