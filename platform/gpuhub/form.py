"""The spawn form: what a user may pick, rendered as HTML; and form data shaped into user_options.

Shaping only: validation happens in ``profiles.choose_profile`` for the form and the REST API alike.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape

from .profiles import GPU_NOT_YET, default_profile, profiles_for
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


def render_form(settings: Settings, groups) -> str:
    profiles = profiles_for(settings, groups)
    usable = [p for p in profiles if not p.wants_gpu]
    selected = default_profile(usable)
    rows = [
        {
            "name": p.name,
            "title": p.title,
            "description": p.description,
            "facts": profile_facts(p),
            "unavailable": f"{GPU_NOT_YET}; not yet installed on this hub." if p.wants_gpu else "",
        }
        for p in profiles
    ]
    return _template().render(
        profiles=rows, selected=selected.name if selected else "", home_path=settings.spawner.home_path
    )


def options_from_form(formdata: dict) -> dict:
    """``{"profile": ["cpu-small"]}`` → ``{"profile": "cpu-small"}``; nothing is checked here."""
    return {key: values[0] for key, values in formdata.items() if key in ("profile",) and values}
