"""Classroom and lab sessions: pure policy. No Docker, no hub, no database.

A session is an instructor's course meeting: a course group, a roster, time windows, a profile,
devices reserved for it during its windows, datasets, an optional shared course folder. Here: the
session as data (``Session``), when it is open (``open_window``, ``next_window``, ``closed_message``),
which devices are reserved now (``reserved_devices``), and the roster CSV (``parse_roster``).

Windows are naive UTC, as every time gpuhub stores. A session with ``prewarm_minutes`` opens that
much before each window: the agent starts the roster's servers then, and a student may start theirs.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from .durations import duration_text

MAX_WINDOWS = 500
MAX_NAME_TEXT = 200
EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HEADER_NAMES = {"username": "username", "user": "username", "login": "username", "name": "name", "email": "email"}
REPORT_LIMIT = 1000  # names listed per kind in an import report (the counts are always whole)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Session:
    name: str
    profile: str
    windows: tuple[Window, ...]
    title: str = ""
    group: str = ""  # the course's JupyterHub group; the roster is added to it
    devices: tuple[str, ...] = ()  # GPU or MIG UUIDs held for the roster during a window
    datasets: tuple[str, ...] = ()  # [[datasets]] names mounted read-only
    shared_folder: bool = False  # a course volume: read-write for instructors, read-only for students
    prewarm_minutes: int = 0
    stop_at_end: bool = False
    instructors: tuple[str, ...] = ()
    group_work: bool = False  # [network] isolation: its members' servers may reach each other (a network of its own)

    @property
    def lead(self) -> timedelta:
        return timedelta(minutes=self.prewarm_minutes)

    def to_json(self) -> dict:
        data = asdict(self)
        data["windows"] = [{"start": _iso(w.start), "end": _iso(w.end)} for w in self.windows]
        for key in ("devices", "datasets", "instructors"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict) -> Session:
        """From ``to_json`` (the database's copy); the API's bodies go through ``web.payloads``."""
        windows = tuple(Window(_from_iso(w["start"]), _from_iso(w["end"])) for w in data["windows"])
        return cls(
            name=data["name"],
            profile=data["profile"],
            windows=windows,
            title=data.get("title", ""),
            group=data.get("group", ""),
            devices=tuple(data.get("devices", ())),
            datasets=tuple(data.get("datasets", ())),
            shared_folder=bool(data.get("shared_folder", False)),
            group_work=bool(data.get("group_work", False)),
            prewarm_minutes=int(data.get("prewarm_minutes", 0)),
            stop_at_end=bool(data.get("stop_at_end", False)),
            instructors=tuple(data.get("instructors", ())),
        )


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds") + "Z"


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


def when(t: datetime) -> str:
    """How messages name a time: ``Mon 2026-11-23 09:00 UTC``."""
    return t.strftime("%a %Y-%m-%d %H:%M UTC")


def check_windows(windows: Iterable[Window]) -> str | None:
    """Why these windows cannot be a session's (None: they can): each ends after it starts; none
    overlaps another; at most ``MAX_WINDOWS``."""
    ordered = sorted(windows, key=lambda w: w.start)
    if not ordered:
        return "no window. Accepted: at least one {start, end}"
    if len(ordered) > MAX_WINDOWS:
        return f"{len(ordered)} windows. Accepted: at most {MAX_WINDOWS}"
    for w in ordered:
        if w.end <= w.start:
            return f"the window starting {when(w.start)} does not end after it starts"
        if w.end - w.start > timedelta(days=31):
            return f"the window starting {when(w.start)} is longer than 31 days"
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            return f"the windows starting {when(a.start)} and {when(b.start)} overlap"
    return None


def open_window(session: Session, now: datetime) -> Window | None:
    """The window the session is open for at ``now`` (from ``prewarm_minutes`` before its start to
    its end), or None."""
    return next((w for w in session.windows if w.start - session.lead <= now < w.end), None)


def next_window(session: Session, now: datetime) -> Window | None:
    """The next window that opens after ``now``, or None (the session is over)."""
    later = [w for w in session.windows if w.start - session.lead > now]
    return min(later, key=lambda w: w.start) if later else None


def closed_message(session: Session, now: datetime) -> str | None:
    """None while the session is open; else why a student cannot start it now, with the next start."""
    if open_window(session, now) is not None:
        return None
    label = session.title or session.name
    upcoming = next_window(session, now)
    if upcoming is None:
        last = max(session.windows, key=lambda w: w.end)
        return f"Session {label!r} is over: its last window ended {when(last.end)}. Ask your instructor for a new session"
    opens = upcoming.start - session.lead
    wait = opens - now
    in_text = duration_text(wait.total_seconds())
    early = f" (servers may start from {when(opens)})" if session.lead else ""
    return (
        f"Session {label!r} is not open now. It opens next {when(upcoming.start)}{early}, in {in_text};"
        " start your server then"
    )


def status_text(session: Session, now: datetime) -> tuple[bool, str] | None:
    """(open?, what the spawn form says of it) at ``now``; None once it is over."""
    window = open_window(session, now)
    if window is not None:
        return True, f"Open now, until {when(window.end)}."
    if next_window(session, now) is None:
        return None
    return False, closed_message(session, now) + "."


def reserved_devices(sessions: Iterable[Session], now: datetime) -> dict[str, str]:
    """Device UUID → the session holding it at ``now`` (its window, with the prewarm lead, is open)."""
    held = {}
    for s in sessions:
        if s.devices and open_window(s, now) is not None:
            for uuid in s.devices:
                held.setdefault(uuid, s.name)
    return held


def usable_devices(sessions: list[Session], session_name: str, now: datetime) -> tuple[frozenset[str] | None, frozenset[str]]:
    """(only these, if not None; never these) for a start at ``now``: a start for session
    ``session_name`` uses only that session's reserved devices (if it has any); every start stays off
    the devices other sessions hold now."""
    reserved = reserved_devices(sessions, now)
    mine = next((s for s in sessions if s.name == session_name), None) if session_name else None
    only = frozenset(mine.devices) if mine is not None and mine.devices else None
    return only, frozenset(u for u, holder in reserved.items() if holder != session_name or not session_name)


def device_conflict(session: Session, others: Iterable[Session]) -> str | None:
    """Why ``session`` cannot reserve its devices (another session holds one of them in an
    overlapping window, prewarm leads included), or None."""
    for other in others:
        if other.name == session.name:
            continue
        shared = sorted(set(session.devices) & set(other.devices))
        if not shared:
            continue
        for a in session.windows:
            for b in other.windows:
                if a.start - session.lead < b.end and b.start - other.lead < a.end:
                    return (
                        f"device {shared[0]} is reserved by session {other.name!r} from {when(b.start - other.lead)}"
                        f" to {when(b.end)}, which overlaps the window starting {when(a.start)}"
                    )
    return None


# --- the roster CSV --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RosterEntry:
    row: int  # 1-based line of the file
    username: str
    name: str = ""
    email: str = ""


@dataclass(frozen=True)
class BadRow:
    row: int
    text: str
    reason: str


@dataclass
class RosterFile:
    entries: list[RosterEntry] = field(default_factory=list)
    duplicates: list[tuple[int, str, int]] = field(default_factory=list)  # (row, username, its first row)
    invalid: list[BadRow] = field(default_factory=list)


class RosterError(ValueError):
    """The whole file is refused (not text, too long, an unknown column); nothing is imported."""


def parse_roster(
    data: bytes, normalise_username: Callable[[str], str], max_rows: int = 20000
) -> RosterFile:
    """Read a roster CSV: ``username[,name[,email]]`` per line, with an optional header row naming the
    columns (``username``/``user``/``login``, ``name``, ``email``, any order). Blank lines and lines
    starting with ``#`` are skipped. ``normalise_username`` returns the hub's form of a name or
    raises ValueError with the reason. Rows that cannot be used are reported, not fatal."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RosterError(f"not UTF-8 text (byte {e.start}). Accepted: a CSV file saved as UTF-8") from None
    if "\x00" in text:
        raise RosterError("contains NUL bytes: not a text file. Accepted: a CSV file saved as UTF-8")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise RosterError(f"not CSV ({e}). Accepted: username[,name[,email]] per line") from None
    rows = [(i, r) for i, r in enumerate(rows, 1) if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    columns = ["username", "name", "email"]
    first = [c.strip().lower() for c in rows[0][1]] if rows else []
    if {"username", "user", "login"} & set(first):  # a header row names the columns
        header = [c for c in first if c]
        unknown = [c for c in header if c not in HEADER_NAMES]
        if unknown:
            raise RosterError(f"unknown column(s) {', '.join(map(repr, unknown))}. Accepted columns: username, name, email")
        columns = [HEADER_NAMES[c] for c in header]
        if len(set(columns)) != len(columns):
            raise RosterError("a column is named twice in the header. Accepted columns: username, name, email")
        rows = rows[1:]
    if len(rows) > max_rows:
        raise RosterError(f"{len(rows)} rows. Accepted: at most {max_rows} (settings: [sessions] max_roster_rows)")
    result = RosterFile()
    first_row: dict[str, int] = {}
    for number, cells in rows:
        shown = ",".join(cells)[:120]
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
            result.invalid.append(BadRow(number, shown, f"{len(cells)} columns; accepted: {', '.join(columns)}"))
            continue
        values = dict(zip(columns, (c.strip() for c in cells)))
        reason, entry = _entry(number, values, normalise_username)
        if reason:
            result.invalid.append(BadRow(number, shown, reason))
        elif entry.username in first_row:
            result.duplicates.append((number, entry.username, first_row[entry.username]))
        else:
            first_row[entry.username] = number
            result.entries.append(entry)
    return result


def _entry(number: int, values: dict, normalise_username) -> tuple[str, RosterEntry | None]:
    raw = values.get("username", "")
    if not raw:
        return "no username", None
    try:
        username = normalise_username(raw)
    except ValueError as e:
        return f"username {raw!r}: {e}", None
    name, email = values.get("name", ""), values.get("email", "")
    if len(name) > MAX_NAME_TEXT or CONTROL.search(name):
        return f"name: longer than {MAX_NAME_TEXT} characters or has control characters", None
    if email and (len(email) > 254 or not EMAIL.match(email)):
        return f"email {email[:60]!r} is not an email address", None
    return "", RosterEntry(number, username, name, email)


def import_report(parsed: RosterFile, added: list[str], present: list[str]) -> dict:
    """What the instructor reads after an import: counts, and the names and rows behind them."""
    return {
        "added": len(added),
        "already_present": len(present),
        "duplicates": len(parsed.duplicates),
        "invalid": len(parsed.invalid),
        "added_users": added[:REPORT_LIMIT],
        "present_users": present[:REPORT_LIMIT],
        "duplicate_rows": [
            {"row": row, "username": user, "reason": f"duplicate of row {first}"}
            for row, user, first in parsed.duplicates[:REPORT_LIMIT]
        ],
        "invalid_rows": [{"row": b.row, "text": b.text, "reason": b.reason} for b in parsed.invalid[:REPORT_LIMIT]],
    }
