"""``gpuhub backup`` and ``gpuhub restore`` (``gpuhub.cli``): the settings file and the engine of the
container they run in, handed to ``service``."""

from __future__ import annotations

import os
from pathlib import Path

from ..config.schema import Settings, load_settings
from ..engine.docker import docker_client
from .archive import verify
from .service import backup, restore

SETTINGS_ENV, SETTINGS_IN_IMAGE = "GPUHUB_SETTINGS", "/srv/gpuhub/settings.toml"  # as the hub image sets it


def _settings() -> Settings:
    return load_settings(os.environ.get(SETTINGS_ENV) or SETTINGS_IN_IMAGE)


def run_backup(to: str, site: str | None) -> str:
    return str(backup(_settings(), Path(to), docker_client(), site_dir=Path(site) if site else None))


def run_restore(archive: str, replace: bool, check: bool) -> str:
    if check:
        manifest = verify(archive)
        return f"{archive}: intact ({len(manifest.members)} parts, taken {manifest.created}, {manifest.users} users)"
    restore(Path(archive), _settings(), docker_client(), replace=replace)
    return "restored: start the hub (bash scripts/up)"
