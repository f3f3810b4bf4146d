"""``gpuhub backup`` and ``gpuhub restore`` (``gpuhub.cli``): the settings file and the engine of the
container they run in, handed to ``service``."""

from __future__ import annotations

from pathlib import Path

from ..config.schema import load_settings, settings_path
from ..engine.docker import docker_client
from .archive import verify
from .service import backup, restore

CONFIG_DIR = "/srv/gpuhub"  # the hub image's jupyterhub_config.py and settings.toml (GPUHUB_SETTINGS overrides)


def run_backup(to: str, site: str | None) -> str:
    """``site``: the folder with the site's own settings.toml and drop-ins (scripts/backup stages them);
    default: the folder of the settings file the hub runs."""
    path = settings_path(CONFIG_DIR)
    return str(backup(load_settings(path), Path(to), docker_client(), site_dir=Path(site) if site else Path(path).parent))


def run_restore(archive: str, replace: bool, check: bool) -> str:
    if check:
        manifest = verify(archive)
        return f"{archive}: intact ({len(manifest.members)} parts, taken {manifest.created}, {manifest.users} users)"
    restore(Path(archive), load_settings(settings_path(CONFIG_DIR)), docker_client(), replace=replace)
    return "restored: start the hub (bash scripts/up)"
