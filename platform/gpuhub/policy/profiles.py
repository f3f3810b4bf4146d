"""Which profiles a user may pick, and which one a spawn request means.

Pure policy: settings, the request's ``user_options`` and the user's groups in; a ``Profile`` or a
``SpawnRefused`` with a message naming the field and what is accepted out. No Docker, no hub.
"""

from __future__ import annotations

from .allocator import GpuRequest
from .errors import SpawnRefused
from ..config.schema import SLUG, SLUG_ACCEPTED, Profile, Settings

# Keys a spawn request (form or REST ``user_options``) may carry.
ACCEPTED_OPTIONS = ("profile", "image", "session")


def gpu_request(profile: Profile) -> GpuRequest | None:
    """What ``profile`` asks of the GPU allocator; None for a CPU-only profile."""
    if not profile.wants_gpu:
        return None
    return GpuRequest(
        mode=profile.gpu_mode,
        count=profile.gpus,
        memory_bytes=profile.gpu_memory or 0,
        mig_profile=profile.mig_profile,
    )


def profiles_for(settings: Settings, groups: list[str] | set[str]) -> list[Profile]:
    """The profiles a member of ``groups`` may use, in settings order."""
    groups = set(groups)
    return [p for p in settings.profiles if not p.groups or groups.intersection(p.groups)]


def default_profile(profiles: list[Profile]) -> Profile | None:
    return next((p for p in profiles if p.default), profiles[0] if profiles else None)


def session_name(user_options) -> str | None:
    """The classroom session a request names (``{"session": "ml101"}``), or None."""
    name = user_options.get("session") if isinstance(user_options, dict) else None
    if name is not None and (not isinstance(name, str) or not SLUG.match(name)):
        raise SpawnRefused(400, f"session: {name!r:.80} is not a session name. Accepted: {SLUG_ACCEPTED}", why="options")
    return name


def choose_profile(settings: Settings, user_options: dict, groups, session_profile: str | None = None) -> Profile:
    """Validate ``user_options`` for this user; return the profile it selects (the default if none).
    For a start of a classroom session the session decides the profile (``session_profile``): the
    roster, not the profile's groups, says who may use it."""
    if not isinstance(user_options, dict):
        raise SpawnRefused(400, "user_options must be an object, e.g. {\"profile\": \"cpu-small\"}", why="options")
    unknown = sorted(set(user_options) - set(ACCEPTED_OPTIONS))
    if unknown:
        raise SpawnRefused(
            400,
            f"Unknown spawn option(s): {', '.join(map(repr, unknown))}. Accepted: {', '.join(ACCEPTED_OPTIONS)}",
            why="options",
        )
    allowed = profiles_for(settings, groups)
    allowed_names = ", ".join(p.name for p in allowed) or "none"
    name = user_options.get("profile")
    if session_profile is not None:
        if name not in (None, "", session_profile):
            raise SpawnRefused(
                400, f"This session starts profile {session_profile!r}; leave profile out (got {name!r})", why="options"
            )
        profile = settings.profile(session_profile)
        if profile is None:
            raise SpawnRefused(
                409, f"This session's profile {session_profile!r} is no longer on this hub; ask the instructor", why="profile"
            )
    elif name is None or name == "":
        profile = default_profile(allowed)
        if profile is None:
            raise SpawnRefused(403, "No profile is open to you; ask an admin to add you to a group", why="forbidden")
    else:
        if not isinstance(name, str):
            raise SpawnRefused(400, f"profile must be a profile name (text), got {name!r}", why="options")
        profile = settings.profile(name)
        if profile is None:
            raise SpawnRefused(400, f"No such profile: {name!r}. Options include: {allowed_names}", why="profile")
        if profile not in allowed:
            raise SpawnRefused(
                403,
                f"Profile {name!r} is limited to the groups {', '.join(profile.groups)}."
                f" Profiles open to you: {allowed_names}",
                why="forbidden",
            )
    image = user_options.get("image")
    if image is not None and not isinstance(image, str):
        raise SpawnRefused(400, f"image must be an image reference (text), got {image!r}", why="options")
    return profile


def missing_image_text(image: str, profile: str) -> str:
    """Why a profile cannot start when its image is not on the host (``pull_policy = "never"``), and
    how an admin gets it: gpuhub's own images are built by ``images/build.sh``."""
    repository, _, tag = image.rpartition(":")
    if repository == "gpuhub/pytorch-cuda" and tag:
        how = f"build it (bash images/build.sh {'cpu' if tag == 'cpu' else 'cuda ' + tag})"
    else:
        how = f"pull or build it on the host (docker pull {image})"
    return (
        f"The image {image!r} of profile {profile!r} is not on this host, and the hub does not pull images"
        f' (pull_policy = "never"). An admin must {how}, or point the profile at an image the host has'
    )
