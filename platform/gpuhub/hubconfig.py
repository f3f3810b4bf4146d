"""From the site settings file to JupyterHub config. ``jupyterhub_config.py`` calls this, then loads
``jupyterhub_config.d/*.py``: defaults → settings file → drop-in files. Config is only set here,
never appended to or mutated, so a drop-in file can override any of it."""

from __future__ import annotations

import glob
import os

from .settings import Settings, SettingsError, load_settings

SETTINGS_ENV = "GPUHUB_SETTINGS"
CONFIG_D_ENV = "GPUHUB_CONFIG_D"


def settings_path(config_dir: str) -> str:
    return os.environ.get(SETTINGS_ENV) or os.path.join(config_dir, "settings.toml")


def config_d_files(config_dir: str) -> list[str]:
    """Drop-in config files, in name order: ``$GPUHUB_CONFIG_D`` or ``jupyterhub_config.d/`` beside the config."""
    folder = os.environ.get(CONFIG_D_ENV) or os.path.join(config_dir, "jupyterhub_config.d")
    return sorted(glob.glob(os.path.join(folder, "*.py")))


def apply_site_settings(c, path: str) -> Settings:
    """Load and validate the settings file at ``path`` and set the hub's config from it.
    A bad file stops the hub here with the reason (key, value, what is accepted)."""
    try:
        settings = load_settings(path)
    except SettingsError as e:
        raise SystemExit(f"gpuhub: the hub does not start: bad settings file.\n  {e}") from None
    hub, sp = settings.hub, settings.spawner

    c.JupyterHub.spawner_class = "gpuhub"
    c.JupyterHub.authenticator_class = "gpuhub-native" if hub.authenticator == "native" else hub.authenticator
    c.JupyterHub.bind_url = hub.bind_url
    c.JupyterHub.hub_bind_url = hub.hub_bind_url
    if hub.hub_connect_url:
        c.JupyterHub.hub_connect_url = hub.hub_connect_url
    c.JupyterHub.db_url = hub.db_url
    if hub.state_dir:
        c.JupyterHub.cookie_secret_file = os.path.join(hub.state_dir, "jupyterhub_cookie_secret")
        c.ConfigurableHTTPProxy.pid_file = os.path.join(hub.state_dir, "jupyterhub-proxy.pid")
    c.Authenticator.admin_users = set(hub.admin_users)
    if hub.admin_users:
        c.GPUHubAuthenticator.first_admin = hub.admin_users[0]  # the set above loses the order
    # Users' servers outlive a hub restart (a config change, an upgrade); the hub finds them again.
    c.JupyterHub.cleanup_servers = False

    c.GPUSpawner.site_settings = settings
    c.DockerSpawner.network_name = sp.network
    c.DockerSpawner.use_internal_ip = True
    c.DockerSpawner.remove = True  # a fresh container each start; the home lives in its volume
    c.DockerSpawner.allowed_images = list(sp.allowed_images)
    c.DockerSpawner.pull_policy = sp.pull_policy
    c.Spawner.default_url = sp.default_url
    c.Spawner.start_timeout = sp.start_timeout
    c.Spawner.http_timeout = sp.start_timeout
    return settings
