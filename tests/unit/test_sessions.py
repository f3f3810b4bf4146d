"""Classroom sessions: windows with a moved clock, reservations, the roster CSV (good, duplicate, bad
rows, whole-file refusals, 10,000 rows into the database twice), session bodies, the start gate."""

import asyncio
from datetime import datetime, timedelta

import pytest

from gpuhub.policy import containers, form
from gpuhub.web.payloads import BadRequest, parse_session
from gpuhub.hub.admission import StartGate
from gpuhub.hub.progress import StartProgress
from gpuhub.policy.allocator import GpuRequest
from gpuhub.policy.errors import SpawnRefused
from gpuhub.inventory.file import parse_inventory
from gpuhub.policy.profiles import choose_profile, session_name
from gpuhub.policy.sessions import (
    RosterError,
    Session,
    Window,
    check_windows,
    closed_message,
    device_conflict,
    import_report,
    open_window,
    parse_roster,
    reserved_devices,
    status_text,
)
from gpuhub.config.schema import parse_settings
from gpuhub.db.records import Allocation
from gpuhub.policy.allocator import NeverFits, NoFitNow
from tests.conftest import BASE_SETTINGS
from tests.unit.test_inventory import POOL, gpu_uuid, mig_uuid

MON = datetime(2026, 11, 23)  # a Monday
INV = parse_inventory(POOL, "file:pool.toml")


def at(day: datetime, hh: int, mm: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm)


def lab(**kw) -> Session:
    base = dict(
        name="ml101",
        profile="gpu-1",
        title="ML 101 lab",
        windows=(Window(at(MON, 9), at(MON, 11)), Window(at(MON + timedelta(days=2), 9), at(MON + timedelta(days=2), 11))),
        instructors=("prof",),
    )
    return Session(**{**base, **kw})


# --- windows -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "windows, problem",
    [
        ([Window(at(MON, 9), at(MON, 11))], None),
        ([Window(at(MON, 13), at(MON, 14)), Window(at(MON, 9), at(MON, 11))], None),  # any order
        ([Window(at(MON, 9), at(MON, 11)), Window(at(MON, 11), at(MON, 12))], None),  # back to back
        ([], "no window"),
        ([Window(at(MON, 11), at(MON, 9))], "does not end after it starts"),
        ([Window(at(MON, 9), at(MON, 9))], "does not end after it starts"),
        ([Window(at(MON, 9), at(MON, 11)), Window(at(MON, 10), at(MON, 12))], "overlap"),
        ([Window(MON, MON + timedelta(days=32))], "longer than 31 days"),
        ([Window(MON + timedelta(hours=i), MON + timedelta(hours=i, minutes=30)) for i in range(501)], "at most 500"),
    ],
)
def test_window_rules(windows, problem):
    found = check_windows(windows)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(
    "now, is_open, fragments",
    [
        (at(MON, 8, 49), False, ["'ML 101 lab' is not open now", "opens next Mon 2026-11-23 09:00 UTC", "from Mon 2026-11-23 08:50 UTC", "in 1 min"]),
        (at(MON, 8, 50), True, []),  # the prewarm lead opens it 10 minutes early
        (at(MON, 10, 59), True, []),
        (at(MON, 11, 0), False, ["opens next Wed 2026-11-25 09:00 UTC", "in 45 h 50 min"]),
        (at(MON - timedelta(days=3), 12), False, ["opens next Mon 2026-11-23 09:00 UTC", "in 68 h 50 min"]),
        (at(MON + timedelta(days=2), 11, 0), False, ["is over: its last window ended Wed 2026-11-25 11:00 UTC"]),
    ],
)
def test_the_window_with_a_moved_clock(now, is_open, fragments):
    session = lab(prewarm_minutes=10)
    message = closed_message(session, now)
    assert (open_window(session, now) is not None) == is_open == (message is None)
    for fragment in fragments:
        assert fragment in message
    status = status_text(session, now)
    if "is over" in " ".join(fragments):
        assert status is None  # the form no longer offers it
    else:
        assert status[0] == is_open


def test_reservations_follow_the_windows_and_conflicts_are_found():
    a = lab(devices=(gpu_uuid(0), gpu_uuid(1)), prewarm_minutes=15)
    b = lab(name="cv201", devices=(gpu_uuid(1),), windows=(Window(at(MON, 11), at(MON, 12)),))
    assert reserved_devices([a, b], at(MON, 8, 40)) == {}
    assert reserved_devices([a, b], at(MON, 8, 45)) == {gpu_uuid(0): "ml101", gpu_uuid(1): "ml101"}
    assert reserved_devices([a, b], at(MON, 11, 30)) == {gpu_uuid(1): "cv201"}
    assert device_conflict(b, [a]) is None  # back to back on GPU 1
    c = lab(name="late", devices=(gpu_uuid(1),), windows=(Window(at(MON, 10, 30), at(MON, 12)),))
    assert "reserved by session 'ml101'" in device_conflict(c, [a, b])
    d = lab(name="early", devices=(gpu_uuid(0),), windows=(Window(at(MON, 7), at(MON, 8, 50)),))
    assert "reserved by session 'ml101' from Mon 2026-11-23 08:45 UTC" in device_conflict(d, [a])  # the lead counts


@pytest.mark.parametrize(
    "only, exclude, kept",
    [
        (None, set(), [gpu_uuid(i) for i in range(6)]),
        ({gpu_uuid(0)}, set(), [gpu_uuid(0)]),
        (None, {gpu_uuid(0), gpu_uuid(2)}, [gpu_uuid(i) for i in (1, 3, 4, 5)]),
        ({mig_uuid(1)}, set(), [gpu_uuid(5)]),  # a slice brings its GPU, with that slice only
        (None, {mig_uuid(0), mig_uuid(1), mig_uuid(2)}, [gpu_uuid(i) for i in range(5)]),  # no slice left: never the whole GPU
        ({gpu_uuid(5)}, {mig_uuid(0)}, [gpu_uuid(5)]),
    ],
)
def test_inventory_restricted(only, exclude, kept):
    restricted = INV.restricted(frozenset(only) if only is not None else None, frozenset(exclude))
    assert [g.uuid for g in restricted.gpus] == kept
    for g in restricted.gpus:
        if g.uuid == gpu_uuid(5):
            expected = [s.uuid for s in INV.by_uuid[g.uuid].mig if s.uuid not in exclude and (only is None or gpu_uuid(5) in only or s.uuid in only)]
            assert [s.uuid for s in g.mig] == expected


# --- the roster CSV ------------------------------------------------------------------------------------
def normalise(raw: str) -> str:
    name = raw.lower()
    if " " in name or len(name) > 40:
        raise ValueError("not a valid username on this hub")
    return name


@pytest.mark.parametrize(
    "text, entries, duplicates, invalid",
    [
        ("alice\nbob\n", [("alice", "", ""), ("bob", "", "")], [], []),
        ("username,name,email\nalice,Alice A,alice@uni.edu\n", [("alice", "Alice A", "alice@uni.edu")], [], []),
        ("Email,Login\nalice@uni.edu,Alice\n", [("alice", "", "alice@uni.edu")], [], []),  # any order, any case
        ("\ufeffusername\nalice\n", [("alice", "", "")], [], []),  # Excel's BOM
        ("# class list\n\nalice\n  \n", [("alice", "", "")], [], []),  # comments and blank lines
        ('alice,"Doe, Alice",a@x.org\n', [("alice", "Doe, Alice", "a@x.org")], [], []),  # quoted comma
        ("alice\nALICE\nbob\nalice\n", [("alice", "", ""), ("bob", "", "")], [(2, "alice", 1), (4, "alice", 1)], []),
        ("alice,,not-an-email\n", [], [], [(1, "email 'not-an-email' is not an email address")]),
        ("al ice\n", [], [], [(1, "username 'al ice': not a valid username on this hub")]),
        (",Nobody\n", [], [], [(1, "no username")]),
        ("alice,A,a@x.org,extra\n", [], [], [(1, "4 columns")]),
        ("alice,A,a@x.org,\n", [("alice", "A", "a@x.org")], [], []),  # an empty trailing column is fine
        ("alice,A\x07B\n", [], [], [(1, "control characters")]),
        ("x" * 41 + "\nbob\n", [("bob", "", "")], [], [(1, "not a valid username")]),
    ],
)
def test_roster_rows(text, entries, duplicates, invalid):
    parsed = parse_roster(text.encode(), normalise)
    assert [(e.username, e.name, e.email) for e in parsed.entries] == entries
    assert parsed.duplicates == duplicates
    assert [b.row for b in parsed.invalid] == [row for row, _ in invalid]
    for bad, (_, reason) in zip(parsed.invalid, invalid):
        assert reason in bad.reason


@pytest.mark.parametrize(
    "data, fragment",
    [
        ("alice\nbøb\n".encode("latin-1"), "not UTF-8 text"),
        (b"alice\x00\n", "NUL"),
        (b"username,phone\nalice,123\n", "unknown column(s) 'phone'"),
        (b"username,user\nalice,bob\n", "named twice"),
        (b"\n".join(b"u%d" % i for i in range(11)), "11 rows. Accepted: at most 10"),
    ],
)
def test_roster_files_refused_whole(data, fragment):
    with pytest.raises(RosterError) as e:
        parse_roster(data, normalise, max_rows=10)
    assert fragment in str(e.value)


def test_ten_thousand_rows_import_once_and_reimport_idempotently(store):
    sessions = store.sessions
    sessions.save(lab(), "prof")
    rows = [f"student{i:05d},Student {i},s{i}@uni.edu" for i in range(10_000)]
    rows += ["student00007", "student09999"]  # duplicates
    rows += ["bad name", "x,y,not-an-email"]  # invalid
    text = ("username,name,email\n" + "\n".join(rows)).encode()
    parsed = parse_roster(text, normalise)
    assert (len(parsed.entries), len(parsed.duplicates), len(parsed.invalid)) == (10_000, 2, 2)
    added, present = sessions.import_roster("ml101", parsed.entries)
    report = import_report(parsed, added, present)
    assert (report["added"], report["already_present"], report["duplicates"], report["invalid"]) == (10_000, 0, 2, 2)
    assert len(report["added_users"]) == 1000  # names listed are capped; counts are whole
    assert report["duplicate_rows"][0] == {"row": 10_002, "username": "student00007", "reason": "duplicate of row 9"}
    assert [r["row"] for r in report["invalid_rows"]] == [10_004, 10_005]
    again = sessions.import_roster("ml101", parse_roster(text, normalise).entries)
    assert (len(again[0]), len(again[1])) == (0, 10_000)
    roster = sessions.roster("ml101")
    assert len(roster) == 10_000 and roster[7] == {
        "username": "student00007", "name": "Student 7", "email": "s7@uni.edu", "added": store.db.clock()
    }
    assert sessions.on_roster("ml101", "student04321") and not sessions.on_roster("ml101", "stranger")
    assert sessions.status()["ml101"]["roster"] == 10_000
    assert sessions.import_roster("nope", parsed.entries) is None


def test_sessions_of_a_student_and_requests(store, clock):
    sessions = store.sessions
    sessions.save(lab(), "prof")
    sessions.save(lab(name="cv201", instructors=("ta",)), "ta")
    sessions.import_roster("ml101", parse_roster(b"alice\n", normalise).entries)
    assert [s.name for s in sessions.sessions_of("alice")] == ["ml101"]
    assert [s.name for s in sessions.sessions_of("ta")] == ["cv201"]  # instructors may start their session
    assert sessions.request("ml101", "prewarm") and not sessions.request("nope", "stop")
    asked = sessions.status()["ml101"]["prewarm_requested"]
    clock.now += timedelta(seconds=5, microseconds=250)
    sessions.request("ml101", "prewarm")  # asked again while the agent worked: the newer request stays
    sessions.done("ml101", "prewarm", asked)
    newer = clock.now.replace(microsecond=0)  # whole seconds, as the agent hands them back
    assert sessions.status()["ml101"]["prewarm_requested"] == newer
    sessions.done("ml101", "prewarm", newer)
    assert sessions.status()["ml101"]["prewarm_requested"] is None
    assert sessions.remove_student("ml101", "alice") and not sessions.on_roster("ml101", "alice")
    assert sessions.delete("cv201") and sessions.get("cv201") is None


def test_reserved_gpus_are_held_for_the_session_during_its_window(store, clock):
    sessions = store.sessions
    sessions.save(lab(devices=(gpu_uuid(0), gpu_uuid(1))), "prof")
    whole = GpuRequest("exclusive", 1)

    def start(user, session=""):
        return store.allocate(INV, whole, user, "", "gpu-1", session=session)

    clock.now = at(MON, 8)  # before the window: every healthy GPU is anyone's
    outside = [start(f"early{i}") for i in range(4)]
    assert sorted(a.uuids[0] for a in outside) == [gpu_uuid(i) for i in range(4)]
    for a in outside:
        store.allocations.release(a.id, "done")
    clock.now = at(MON, 9, 30)
    others = [start(f"other{i}") for i in range(3)]
    assert [a.uuids[0] for a in others[:2]] == [gpu_uuid(2), gpu_uuid(3)]
    assert isinstance(others[2], NoFitNow)  # GPUs 0 and 1 are the class's
    students = [start(f"student{i}", "ml101") for i in range(3)]
    assert sorted(a.uuids[0] for a in students[:2]) == [gpu_uuid(0), gpu_uuid(1)]
    assert all(a.session == "ml101" for a in students[:2]) and isinstance(students[2], NoFitNow)
    # four GPUs: more than is unreserved now, not more than the pool: wait, not "never"; but the
    # session's two reserved GPUs can never hold four
    four = GpuRequest("exclusive", 4)
    later = store.allocate(INV, four, "big", "", "gpu-4")
    assert isinstance(later, NoFitNow) and "reserved for a classroom session" in later.reason
    never = store.allocate(INV, four, "student9", "", "gpu-4", session="ml101")
    assert isinstance(never, NeverFits) and "among the devices reserved for session 'ml101'" in never.reason
    clock.now = at(MON, 11)  # the window is over: the reservation is released
    for a in students[:2]:
        store.allocations.release(a.id, "class over")
    assert isinstance(start("other9"), Allocation)


# --- session bodies ------------------------------------------------------------------------------------
SETTINGS = parse_settings(BASE_SETTINGS)
WINDOW = {"start": "2026-11-23T09:00Z", "end": "2026-11-23T11:00:00+00:00"}


def test_a_good_session_body():
    s = parse_session(
        "ml101",
        {"title": " ML 101 ", "profile": "gpu-1", "windows": [WINDOW], "devices": ["0", gpu_uuid(1), "0"], "datasets": ["imagenet"],
         "shared_folder": True, "group_work": True, "prewarm_minutes": 10, "instructors": ["ta"]},
        SETTINGS, INV, "prof",
    )
    assert s == Session(
        "ml101", "gpu-1", (Window(at(MON, 9), at(MON, 11)),), "ML 101", "ml101", (gpu_uuid(0), gpu_uuid(1)), ("imagenet",), True, 10, False, ("prof", "ta"),
        group_work=True,
    )
    assert Session.from_json(s.to_json()) == s


@pytest.mark.parametrize(
    "name, body, field, fragment",
    [
        ("ML 101", {}, "name", "not a session name"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "room": 1}, "room", "unknown field 'room'"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "group_work": "yes"}, "group_work", "Accepted: true or false"),
        ("ml101", {"profile": "nope", "windows": [WINDOW]}, "profile", "'nope' is not a profile"),
        ("ml101", {"profile": "gpu-1"}, "windows", "a list of at most 500"),
        ("ml101", {"profile": "gpu-1", "windows": [{"start": "2026-11-23T09:00Z"}]}, "windows", "window 1"),
        ("ml101", {"profile": "gpu-1", "windows": [{"start": "monday", "end": "tuesday"}]}, "windows", "is not a date"),
        ("ml101", {"profile": "gpu-1", "windows": [{"start": WINDOW["end"], "end": WINDOW["start"]}]}, "windows", "does not end after"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "devices": ["9"]}, "devices", "'9' is not a GPU"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "devices": ["5:0"]}, "devices", "MIG slice"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "devices": ["5"]}, "devices", "partitioned"),
        ("ml101", {"profile": "cpu-small", "windows": [WINDOW], "devices": ["0"]}, "devices", "uses no GPU"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "datasets": ["other"]}, "datasets", "'other' is not a dataset"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "prewarm_minutes": True}, "prewarm_minutes", "0 to 240"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "prewarm_minutes": 241}, "prewarm_minutes", "0 to 240"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "shared_folder": "yes"}, "shared_folder", "true or false"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "instructors": ["<b>"]}, "instructors", "not a name"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "title": "x" * 201}, "title", "at most 200"),
        ("ml101", {"profile": "gpu-1", "windows": [WINDOW], "group": "a/b"}, "group", "not a name"),
    ],
)
def test_bad_session_bodies_name_the_field(name, body, field, fragment):
    with pytest.raises(BadRequest) as e:
        parse_session(name, body, SETTINGS, INV, "prof")
    assert e.value.field == field and fragment in str(e.value), str(e.value)


def test_group_work_is_refused_on_a_swarm_naming_the_field():
    swarm = parse_settings(BASE_SETTINGS + '\n[engine]\nkind = "swarm"\n')
    body = {"profile": "gpu-1", "windows": [WINDOW], "group_work": True}
    with pytest.raises(BadRequest) as e:
        parse_session("ml101", body, swarm, INV, "prof")
    assert e.value.field == "group_work" and "one Docker host" in str(e.value) and "Accepted: false" in str(e.value)
    assert not parse_session("ml101", {**body, "group_work": False}, swarm, INV, "prof").group_work


# --- a session start: options, profile, container --------------------------------------------------------
@pytest.mark.parametrize(
    "formdata, options",
    [
        ({"profile": ["gpu-1"]}, {"profile": "gpu-1"}),
        ({"profile": ["session:ml101"]}, {"session": "ml101"}),
        ({"session": ["ml101"]}, {"session": "ml101"}),  # a start link: /hub/spawn?session=ml101
        ({"profile": ["cpu-small"], "other": ["x"]}, {"profile": "cpu-small", "other": "x"}),  # refused by the one check
    ],
)
def test_form_and_start_link_options(formdata, options):
    assert form.options_from_form(formdata) == options


def test_the_session_decides_the_profile():
    assert choose_profile(SETTINGS, {"session": "ml101"}, [], "cpu-data").name == "cpu-data"  # its groups do not apply
    assert choose_profile(SETTINGS, {"session": "ml101", "profile": "cpu-data"}, [], "cpu-data").name == "cpu-data"
    with pytest.raises(SpawnRefused) as e:
        choose_profile(SETTINGS, {"session": "ml101", "profile": "gpu-1"}, [], "cpu-data")
    assert e.value.status_code == 400 and "leave profile out" in e.value.message
    with pytest.raises(SpawnRefused) as e:
        session_name({"session": 3})
    assert e.value.status_code == 400
    assert session_name({"profile": "x"}) is None


def test_a_session_container_gets_its_datasets_and_course_folder():
    session = lab(profile="cpu-small", datasets=("imagenet",), shared_folder=True)
    profile = SETTINGS.profile("cpu-small")
    student = containers.build(SETTINGS, profile, "alice", session=session)
    teacher = containers.build(SETTINGS, profile, "prof", session=session)
    assert student.volumes["gpuhub-course-ml101"] == {"bind": "/srv/course", "mode": "ro"}
    assert teacher.volumes["gpuhub-course-ml101"] == {"bind": "/srv/course", "mode": "rw"}
    assert student.volumes[SETTINGS.dataset("imagenet").source]["mode"] == "ro"
    assert student.environment["GPUHUB_SESSION"] == "ml101"
    assert student.create_kwargs["labels"]["org.gpuhub.session"] == "ml101"
    plain = containers.build(SETTINGS, profile, "alice")
    assert "GPUHUB_SESSION" not in plain.environment and len(plain.volumes) == 1


def test_the_form_offers_the_students_sessions():
    choice = form.SessionChoice("ml101", "ML 101", SETTINGS.profile("gpu-1"), "Open now, until Mon 2026-11-23 11:00 UTC.", True)
    closed = form.SessionChoice("cv201", "CV 201", SETTINGS.profile("gpu-1"), "Session 'CV 201' is not open now.", False)
    html = form.render_form(SETTINGS, [], sessions=[closed, choice])
    assert 'value="session:ml101" checked' in html and "Class session: ML 101" in html
    assert 'value="session:cv201" disabled' in html and "is not open now" in html


# --- admission: the start gate --------------------------------------------------------------------------
async def test_the_start_gate_bounds_concurrency_in_order():
    gate = StartGate(2)
    running, peak, order = 0, 0, []
    progress = {i: StartProgress() for i in range(7)}
    waits = {i: [] for i in range(7)}  # the places each start's spawn page showed

    async def watch(i):
        async for event in progress[i].events():
            if event["message"].startswith("waiting"):
                waits[i].append(event["message"])

    watchers = [asyncio.ensure_future(watch(i)) for i in range(7)]
    await asyncio.sleep(0)

    async def start(i):
        nonlocal running, peak
        async with gate.turn(f"s{i}", 30, progress[i]):
            progress[i].finish()
            order.append(i)
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

    await asyncio.gather(*(start(i) for i in range(7)))
    await asyncio.gather(*watchers)
    assert peak == 2 and order == list(range(7)) and gate.running == 0
    assert waits[0] == waits[1] == []  # the two first went straight in
    assert waits[4][0] == "waiting for a turn to start: 3rd of 3 in line (2 server(s) starting, at most 2 at once)"
    assert waits[4][-1].startswith("waiting for a turn to start: 1st of")


async def test_the_start_gate_gives_up_with_a_message():
    gate = StartGate(1)
    async with gate.turn("first", 5):
        with pytest.raises(SpawnRefused) as e:
            async with gate.turn("second", 0.2):
                pass
    assert e.value.status_code == 503 and "no turn to start came within 0 seconds" in e.value.message
    async with gate.turn("third", 1):  # the line is empty again: no leftover ticket, no leftover turn
        assert gate.running == 1
