"""The spawn form: what a user may pick, rendered as HTML; and form data shaped into user_options.

Shaping only: validation happens in ``profiles.choose_profile`` for the form and the REST API alike.
"""

from __future__ import annotations

from functools import lru_cache

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape

from ..config.schema import Profile, Settings

from .durations import duration_text
from .errors import SpawnRefused
from .profiles import default_profile, profiles_for

GiB = 1024**3


@lru_cache(maxsize=1)
def _template():
    env = Environment(loader=PackageLoader("gpuhub", "templates"), autoescape=select_autoescape(["html"]))
    return env.get_template("spawn_form.html")


def human_bytes(n: int) -> str:
    return f"{n / GiB:g} GB" if n >= GiB else f"{n / 1024**2:g} MB"


def profile_facts(profile: Profile) -> str:
    gpu = "no GPU" if not profile.wants_gpu else f"{profile.gpus} GPU ({profile.gpu_mode})"
    return (
        f"{profile.cpu_limit:g} CPU · {human_bytes(profile.mem_limit)} RAM · "
        f"{human_bytes(profile.shm_size)} shm · {gpu}"
    )


@dataclass(frozen=True)
class Availability:
    """What the form says about a GPU profile's devices right now."""

    text: str  # e.g. "2 of 8 NVIDIA H100 80GB HBM3 free", "shared: 3 slices free"
    possible: bool = True  # False: this host can never give it (the radio is disabled)
    waiting: int = 0  # people in line for this kind of device
    borrowed_grace: int | None = None  # beyond the user's GPU quota, but it may borrow: the grace period (seconds)


def availability_text(a: Availability) -> str:
    if not a.possible:
        return f"{a.text}: cannot start on this host."
    if a.borrowed_grace is not None:
        return (
            f"{a.text} · borrowed: beyond your GPU quota, it starts only on a GPU that is free with nobody"
            f" waiting, and is stopped (files kept, after a {duration_text(a.borrowed_grace)} warning) when"
            " someone within their quota needs it."
        )
    if a.waiting:
        return f"{a.text} · {a.waiting} waiting: you would join the line."
    return a.text


SESSION_PREFIX = "session:"  # a session's radio value on the form: "session:ml101"


@dataclass(frozen=True)
class SessionChoice:
    """A classroom session the user is on the roster of, as the form offers it."""

    name: str
    title: str
    profile: Profile
    status: str  # "open until Mon 2026-11-23 11:00 UTC" or why it is closed and when it opens
    open: bool


def render_form(
    settings: Settings,
    groups,
    allowed_profiles: tuple[str, ...] | None = None,
    availability: dict[str, Availability] | None = None,
    gpu_source: str = "",
    sessions: list[SessionChoice] = (),
    cannot_start: dict[str, str] | None = None,
) -> str:
    """The form for a member of ``groups`` whose quota allows ``allowed_profiles`` (None: all),
    with each GPU profile's ``availability`` and where the GPU figures come from (``gpu_source``).
    The user's classroom ``sessions`` come first; an open one is preselected. A profile named in
    ``cannot_start`` (its image is not on the host, say) is shown disabled with that reason."""
    availability = availability or {}
    cannot_start = cannot_start or {}
    profiles = [p for p in profiles_for(settings, groups) if allowed_profiles is None or p.name in allowed_profiles]
    usable = [p for p in profiles if availability.get(p.name, Availability("")).possible and p.name not in cannot_start]
    selected = default_profile(usable)
    selected_name = selected.name if selected else ""
    rows = []
    for s in sessions:
        rows.append(
            {
                "name": SESSION_PREFIX + s.name,
                "title": f"Class session: {s.title}",
                "description": f"Profile {s.profile.title}. Your instructor's session; its GPUs are held for the class.",
                "facts": profile_facts(s.profile),
                "capacity": s.status,
                "unavailable": not s.open,
            }
        )
    open_sessions = [s for s in sessions if s.open]
    if open_sessions:
        selected_name = SESSION_PREFIX + open_sessions[0].name
    for p in profiles:
        a = availability.get(p.name)
        rows.append(
            {
                "name": p.name,
                "title": p.title,
                "description": p.description,
                "facts": profile_facts(p),
                "capacity": cannot_start.get(p.name) or (availability_text(a) if a else ""),
                "unavailable": p.name in cannot_start or (a is not None and not a.possible),
            }
        )
    return _template().render(
        profiles=rows,
        selected=selected_name,
        home_path=settings.spawner.home_path,
        gpu_source=gpu_source if any(p.wants_gpu for p in profiles) else "",
    )


FORM_FIELDS_OF_THE_HUB = ("_xsrf",)  # JupyterHub's own fields on the spawn page


def options_from_form(formdata: dict) -> dict:
    """``{"profile": ["cpu-small"]}`` → ``{"profile": "cpu-small"}``; a session's radio
    (``"session:ml101"``) or a start link's query (``?session=ml101``) → ``{"session": "ml101"}``.
    Every other field is passed on too (``{"image": ["x"]}`` → ``{"image": "x"}``), so that the one
    check (``profiles.choose_profile``, the allowed images) refuses the form exactly as the REST API;
    nothing is checked or dropped here."""
    options = {key: values[0] for key, values in formdata.items() if key not in FORM_FIELDS_OF_THE_HUB and values}
    if options.get("profile", "").startswith(SESSION_PREFIX):
        options["session"] = options.pop("profile")[len(SESSION_PREFIX):]
    return options


FETCH_METADATA = ("Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-Site", "Sec-Fetch-User")


def check_start_link(headers) -> None:
    """A start link (``GET /hub/spawn?session=ml101``) starts a server on a GET, so only the person
    may open it: a click or the address bar. Browsers say how a request was made (fetch metadata, on
    HTTPS and localhost): a top-level page (``Sec-Fetch-Mode: navigate``, ``Sec-Fetch-Dest:
    document``) the user started (``Sec-Fetch-User: ?1``, or ``Sec-Fetch-Site: none`` for the address
    bar). Anything else (an image, script, ``fetch()``, a frame, or a page's script navigating) is
    refused: otherwise any page on the hub's origin, another user's server among them, could start
    servers for whoever views it (CVE-2026-40864). A request with no fetch metadata at all is not a
    browser's (a script, ``curl``) or not over HTTPS; it is let through."""
    if all(headers.get(name) is None for name in FETCH_METADATA):
        return
    mode, dest = headers.get("Sec-Fetch-Mode"), headers.get("Sec-Fetch-Dest")
    site, by_user = headers.get("Sec-Fetch-Site"), headers.get("Sec-Fetch-User")
    if mode == "navigate" and dest == "document" and (by_user == "?1" or site == "none"):
        return
    raise SpawnRefused(
        403,
        "A start link must be opened by you: click it, or type it in the address bar. This request came"
        f" from a page's element or script (Sec-Fetch-Mode {mode or '-'}, Sec-Fetch-Dest {dest or '-'},"
        f" Sec-Fetch-User {by_user or '-'}), so nothing was started",
        why="forbidden",
    )


def gpu_source_text(inventory_label: str, simulated: bool, exposure: str) -> str:
    """Where the form's GPU figures come from, saying plainly when they are simulated."""
    text = inventory_label if not simulated else f"SIMULATED inventory {inventory_label.removeprefix('simulated ')}"
    if exposure == "env-only":
        text += " · env-only exposure: containers get the device variables, not the devices"
    return text
