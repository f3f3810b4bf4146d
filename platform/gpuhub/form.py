"""The spawn form: what a user may pick, rendered as HTML; and form data shaped into user_options.

Shaping only: validation happens in ``profiles.choose_profile`` for the form and the REST API alike.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape

from dataclasses import dataclass

from .profiles import default_profile, profiles_for
from .settings import Profile, Settings

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


def availability_text(a: Availability) -> str:
    if not a.possible:
        return f"{a.text}: cannot start on this host."
    if a.waiting:
        return f"{a.text} · {a.waiting} waiting: you would join the line."
    return a.text


def render_form(
    settings: Settings,
    groups,
    allowed_profiles: tuple[str, ...] | None = None,
    availability: dict[str, Availability] | None = None,
    gpu_source: str = "",
) -> str:
    """The form for a member of ``groups`` whose quota allows ``allowed_profiles`` (None: all),
    with each GPU profile's ``availability`` and where the GPU figures come from (``gpu_source``)."""
    availability = availability or {}
    profiles = [p for p in profiles_for(settings, groups) if allowed_profiles is None or p.name in allowed_profiles]
    usable = [p for p in profiles if availability.get(p.name, Availability("")).possible]
    selected = default_profile(usable)
    rows = []
    for p in profiles:
        a = availability.get(p.name)
        rows.append(
            {
                "name": p.name,
                "title": p.title,
                "description": p.description,
                "facts": profile_facts(p),
                "capacity": availability_text(a) if a else "",
                "unavailable": a is not None and not a.possible,
            }
        )
    return _template().render(
        profiles=rows,
        selected=selected.name if selected else "",
        home_path=settings.spawner.home_path,
        gpu_source=gpu_source if any(p.wants_gpu for p in profiles) else "",
    )


def options_from_form(formdata: dict) -> dict:
    """``{"profile": ["cpu-small"]}`` → ``{"profile": "cpu-small"}``; nothing is checked here."""
    return {key: values[0] for key, values in formdata.items() if key in ("profile",) and values}


def gpu_source_text(inventory_label: str, simulated: bool, exposure: str) -> str:
    """Where the form's GPU figures come from, saying plainly when they are simulated."""
    text = inventory_label if not simulated else f"SIMULATED inventory {inventory_label.removeprefix('simulated ')}"
    if exposure == "env-only":
        text += " · env-only exposure: containers get the device variables, not the devices"
    return text
