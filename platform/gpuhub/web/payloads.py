"""Request bodies and query arguments of the admin API, validated before anything is changed.

Pure: text in, values out, or ``BadRequest`` naming the field, what was wrong and what is accepted
(the handler answers it with 400 and changes nothing). Quota values go through the settings file's
own ``[[quotas]]`` schema (``config.schema.Quota``), so the file and the API accept exactly the same.
"""

from __future__ import annotations

import json
import posixpath
import re
from datetime import datetime, timedelta

from ..config.schema import SLUG, SLUG_ACCEPTED, Quota, Settings
from ..config.sections import SettingsError
from ..contract import parse_time as parse_utc
from ..inventory.model import Inventory
from ..policy.errors import SpawnRefused
from ..policy.jobs import JobRequest
from ..policy.profiles import choose_profile
from ..policy.quotas import FIELDS, QuotaRule, rule_from
from ..policy.sessions import MAX_NAME_TEXT, Session, Window, check_windows

MAX_BODY = 64 * 1024
MAX_RANGE = timedelta(days=3660)
SCOPES = ("user", "group", "default")
# a batch job's body (``job_request``)
JOB_FIELDS = ("profile", "command", "wall_time", "name", "workdir")
MAX_JOB_ARGS = 256
MAX_JOB_ARG = 4096
MAX_JOB_NAME = 100
MAX_JOB_WORKDIR = 1024
JOB_NAME = re.compile(r"^[^\x00-\x1f\x7f<>&\"]{1,100}$")
# JupyterHub user and group names: no control characters, no markup, at most 255 characters
NAME = re.compile(r"^[^\x00-\x1f\x7f<>&\"'/\\]{1,255}$")


class BadRequest(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message if message.startswith(field) else f"{field}: {message}")
        self.field = field
        self.message = message


def parse_json_object(body: bytes, limit: int = MAX_BODY) -> dict:
    if len(body) > limit:
        raise BadRequest("body", f"larger than {limit // 1024} KiB")
    try:
        data = json.loads(body or b"{}", parse_constant=_no_constant)
        # text the database cannot store: lone surrogates ("\ud800") are valid JSON, not Unicode
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise BadRequest("body", "nested too deeply. Accepted: a JSON object of fields") from None
    except UnicodeEncodeError:
        raise BadRequest("body", "holds a lone surrogate (\\ud800-\\udfff), which is not text. Accepted: valid Unicode") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest("body", f"not valid JSON ({e}). Accepted: a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("body", f"a JSON {type(data).__name__} is not accepted. Accepted: a JSON object")
    return data


def only_fields(data: dict, accepted) -> None:
    """400 naming the first field of ``data`` not in ``accepted`` (an empty name: "body")."""
    for key in data:
        if key not in accepted:
            raise BadRequest(key or "body", f"unknown field {key[:40]!r}. Accepted fields: {', '.join(accepted)}")


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_name(field: str, value: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise BadRequest(
            field, f"{value!r} is not a name. Accepted: 1 to 255 characters, no control characters, no < > & \" ' / \\"
        )
    return value


def parse_target(scope: str, name: str | None) -> tuple[str, str]:
    """``user/alice``, ``group/ml-lab`` or ``default`` (from the URL) to (scope, name)."""
    if scope not in SCOPES:
        raise BadRequest("scope", f"{scope!r} is not a quota scope. Accepted: user, group or default")
    if scope == "default":
        if name:
            raise BadRequest("name", "the default quota has no name. Accepted: .../quotas/default")
        return scope, ""
    if not name:
        raise BadRequest("name", f"missing. Accepted: .../quotas/{scope}/NAME")
    return scope, parse_name("name", name)


def parse_quota(scope: str, name: str, data: dict, profile_names: list[str]) -> QuotaRule:
    """A quota body (``{"max_gpus": 2, "gpu_hours_per_week": 40, "profiles": [...]}``; a field left
    out or null is not set at this level) to the rule it sets."""
    only_fields(data, FIELDS)
    values = {k: v for k, v in data.items() if v is not None}
    if not values:
        raise BadRequest("body", f"no field set. Accepted fields: {', '.join(FIELDS)}; to remove the rule, DELETE it")
    try:
        quota = Quota.from_dict(values, "")
    except SettingsError as e:
        raise BadRequest(e.key or "body", str(e)) from None
    if quota.profiles is not None:
        for p in quota.profiles:
            if p not in profile_names:
                raise BadRequest("profiles", f"{p!r} is not a profile. Accepted: {', '.join(profile_names)}")
    if quota.profiles is not None:
        quota.profiles = list(dict.fromkeys(quota.profiles))
    return rule_from(scope, name, quota, origin="database")


def parse_time(field: str, value: str) -> datetime:
    """``2026-11-02`` or ``2026-11-02T09:00[:00][Z|+00:00]`` to naive UTC."""
    try:
        return parse_utc(value)
    except ValueError as e:
        raise BadRequest(field, str(e)) from None


def parse_range(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The usage range; default the last 7 days. ``until`` is exclusive."""
    end = parse_time("until", until) if until else now
    start = parse_time("since", since) if since else max(end - timedelta(days=7), datetime(1970, 1, 1))
    if start >= end:
        raise BadRequest("since", f"{since or start.isoformat()} is not before until ({until or 'now'}). Accepted: since < until")
    if end - start > MAX_RANGE:
        raise BadRequest("since", "a range longer than 10 years. Accepted: at most 3660 days")
    return start, end


def parse_choice(field: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadRequest(field, f"{value!r} is not accepted. Accepted: {', '.join(choices)}")
    return value


SESSION_FIELDS = (
    "title", "group", "profile", "windows", "devices", "datasets", "shared_folder", "group_work", "prewarm_minutes",
    "stop_at_end", "instructors",
)


def _list_of(field: str, value, what: str, limit: int = 1000) -> list:
    if not isinstance(value, list) or len(value) > limit:
        raise BadRequest(field, f"{value!r:.80} is not accepted. Accepted: a list of at most {limit} {what}")
    return value


def _bool(field: str, value) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(field, f"{value!r:.80} is not accepted. Accepted: true or false")
    return value


def parse_session_name(value: str) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise BadRequest("name", f"{value!r:.80} is not a session name. Accepted: {SLUG_ACCEPTED}")
    return value


def _device_of(inventory: Inventory, key, mode: str) -> str:
    uuid = inventory.find(key) if isinstance(key, str) else None
    if uuid is None:
        raise BadRequest("devices", f"{key!r:.80} is not a GPU or MIG slice of this hub. Accepted: a UUID or an index such as 0 or 0:1")
    is_slice = uuid.startswith("MIG-")
    if mode == "mig" and not is_slice:
        raise BadRequest("devices", f"{key!r} is a whole GPU; this session's profile uses MIG slices. Accepted: slices such as 0:1")
    if mode != "mig" and (is_slice or inventory.by_uuid[uuid].mig):
        raise BadRequest("devices", f"{key!r} is a MIG slice or a partitioned GPU; this session's profile uses whole GPUs ({mode})")
    return uuid


def parse_session(name: str, data: dict, settings: Settings, inventory: Inventory, by: str) -> Session:
    """A session body (``{"profile": "gpu-shared", "windows": [{"start": ..., "end": ...}], ...}``) to
    the session it describes; ``by`` (the instructor saving it) is always one of its instructors."""
    name = parse_session_name(name)
    only_fields(data, SESSION_FIELDS)
    title = data.get("title", "")
    if not isinstance(title, str) or len(title) > MAX_NAME_TEXT or re.search(r"[\x00-\x1f\x7f]", title):
        raise BadRequest("title", f"{title!r:.80} is not accepted. Accepted: text of at most {MAX_NAME_TEXT} characters")
    group = parse_name("group", data.get("group") or name)
    profile_names = [p.name for p in settings.profiles]
    profile = settings.profile(data["profile"]) if isinstance(data.get("profile"), str) else None
    if profile is None:
        raise BadRequest("profile", f"{data.get('profile')!r:.80} is not a profile. Accepted: {', '.join(profile_names)}")
    windows = []
    for i, w in enumerate(_list_of("windows", data.get("windows"), "{start, end} objects", 500)):
        if not isinstance(w, dict) or set(w) != {"start", "end"} or not all(isinstance(v, str) for v in w.values()):
            accepted = '{"start": "2026-11-23T09:00Z", "end": "2026-11-23T11:00Z"}'
            raise BadRequest("windows", f"window {i + 1}: {w!r:.80} is not accepted. Accepted: {accepted}")
        windows.append(Window(parse_time("windows", w["start"]), parse_time("windows", w["end"])))
    problem = check_windows(windows)
    if problem:
        raise BadRequest("windows", problem)
    devices = [_device_of(inventory, d, profile.gpu_mode) for d in _list_of("devices", data.get("devices", []), "device names", 64)]
    if devices and not profile.wants_gpu:
        raise BadRequest("devices", f"profile {profile.name!r} uses no GPU; reserve devices only for a GPU profile")
    dataset_names = [d.name for d in settings.datasets]
    datasets = _list_of("datasets", data.get("datasets", []), "dataset names", 32)
    for d in datasets:
        if d not in dataset_names:
            raise BadRequest("datasets", f"{d!r:.80} is not a dataset of this hub. Accepted: {', '.join(dataset_names) or 'none defined'}")
    prewarm = data.get("prewarm_minutes", 0)
    if isinstance(prewarm, bool) or not isinstance(prewarm, int) or not 0 <= prewarm <= 240:
        raise BadRequest("prewarm_minutes", f"{prewarm!r:.80} is not accepted. Accepted: an integer from 0 to 240")
    instructors = [parse_name("instructors", u) for u in _list_of("instructors", data.get("instructors", []), "usernames", 50)]
    group_work = _bool("group_work", data.get("group_work", False))
    if group_work and settings.engine.kind != "docker":
        raise BadRequest(
            "group_work", "group work needs one Docker host ([engine] kind = \"docker\"); on a Swarm every student's server stays"
            " isolated from the others'. Accepted: false",
        )
    return Session(
        name=name,
        profile=profile.name,
        windows=tuple(sorted(windows, key=lambda w: w.start)),
        title=title.strip(),
        group=group,
        devices=tuple(dict.fromkeys(devices)),
        datasets=tuple(dict.fromkeys(datasets)),
        shared_folder=_bool("shared_folder", data.get("shared_folder", False)),
        group_work=group_work,
        prewarm_minutes=prewarm,
        stop_at_end=_bool("stop_at_end", data.get("stop_at_end", False)),
        instructors=tuple(dict.fromkeys([by, *instructors])),
    )


MAX_READINGS = 10_000
MAX_READINGS_BODY = 1024 * 1024


def parse_readings(data: dict) -> tuple[bool, list[tuple[int, str, bool]]]:
    """``{"simulated": false, "devices": [{"allocation": 3, "uuid": "GPU-...", "busy": true}, ...]}`` (the
    agent's reading of the held devices) → (simulated, [(allocation, uuid, busy), ...])."""
    only_fields(data, ("simulated", "devices"))
    simulated = _bool("simulated", data.get("simulated"))
    devices = _list_of("devices", data.get("devices"), "readings", MAX_READINGS)
    samples = []
    for i, row in enumerate(devices):
        where = f"devices[{i}]"
        if not isinstance(row, dict) or set(row) != {"allocation", "uuid", "busy"}:
            raise BadRequest(where, f"{row!r:.80} is not accepted. Accepted: an object with allocation, uuid and busy")
        allocation, uuid, busy = row["allocation"], row["uuid"], row["busy"]
        if isinstance(allocation, bool) or not isinstance(allocation, int) or allocation < 1:
            raise BadRequest(f"{where}.allocation", f"{allocation!r:.40} is not accepted. Accepted: an allocation id (a positive integer)")
        if not isinstance(uuid, str) or not re.fullmatch(r"(GPU|MIG)-[0-9A-Za-z/-]{1,90}", uuid):
            raise BadRequest(f"{where}.uuid", f"{uuid!r:.100} is not accepted. Accepted: a GPU-... or MIG-... UUID")
        samples.append((allocation, uuid, _bool(f"{where}.busy", busy)))
    return simulated, samples


def job_request(settings: Settings, data: dict, groups) -> JobRequest:
    """A batch job's body (``POST users/NAME/jobs``, the CLI's) checked for a member of ``groups``: a
    ``policy.jobs.JobRequest``, or ``BadRequest`` naming the field and what is accepted (``SpawnRefused``
    403: a profile of groups they are not in)."""
    only_fields(data, JOB_FIELDS)
    try:
        profile = choose_profile(settings, {"profile": data["profile"]} if "profile" in data else {}, groups)
    except SpawnRefused as e:
        if e.status_code != 400:
            raise  # 403: a profile of groups the person is not in
        raise BadRequest("profile", e.message.removeprefix("profile: ")) from None
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise BadRequest("command", 'not a list of strings. Accepted: the script (or program) and its arguments, e.g. ["train.py", "--epochs", "3"]')
    if len(command) > MAX_JOB_ARGS:
        raise BadRequest("command", f"{len(command)} items. Accepted: at most {MAX_JOB_ARGS}")
    for i, arg in enumerate(command):
        if len(arg) > MAX_JOB_ARG or "\x00" in arg:
            raise BadRequest("command", f"item {i} is longer than {MAX_JOB_ARG} characters or holds a NUL. Accepted: text up to {MAX_JOB_ARG} characters")
    if not command[0].strip():
        raise BadRequest("command", "the first item is empty. Accepted: a script (train.py, analysis.ipynb) or a program")
    limit = settings.jobs.limit_for(groups)
    wall_time = data.get("wall_time", limit)
    if isinstance(wall_time, bool) or not isinstance(wall_time, int) or not 60 <= wall_time <= limit:
        raise BadRequest("wall_time", f"{wall_time!r}. Accepted: seconds from 60 to {limit} (your groups' limit, [jobs])")
    name = data.get("name", "")
    if not isinstance(name, str) or (name and not JOB_NAME.match(name)):
        raise BadRequest("name", f"Accepted: text of 1 to {MAX_JOB_NAME} characters, no control characters or <>&\"")
    workdir = data.get("workdir", "")
    if not isinstance(workdir, str) or len(workdir) > MAX_JOB_WORKDIR or "\x00" in workdir:
        raise BadRequest("workdir", "Accepted: a folder in your home, relative to it (e.g. projects/mnist)")
    normal = posixpath.normpath(workdir) if workdir else ""
    if normal.startswith(("/", "..")):
        raise BadRequest("workdir", f"{workdir[:80]!r} is not inside your home. Accepted: a folder relative to your home")
    name = name or posixpath.basename(command[0])[:MAX_JOB_NAME]
    return JobRequest(profile, tuple(command), wall_time, name, "" if normal == "." else normal)
