"""From the site settings file to JupyterHub config. ``jupyterhub_config.py`` calls this, then loads
``jupyterhub_config.d/*.py``: defaults → settings file → drop-in files. Config is only set here,
never appended to or mutated, so a drop-in file can override any of it."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import secrets
import sys

from ..config.schema import SETTINGS_ENV, Settings, load_settings
from ..config.schema import settings_path as settings_path  # jupyterhub_config.py finds the settings file through here
from ..config.sections import SettingsError
from ..web import metrics
from ..web.routes import handlers
from ..web.scopes import ADMIN, CUSTOM_SCOPES, READ, REPORT, SESSIONS
from .auth import with_gpuhub_pages
from .directory import apply_login
from .hubapi import HubApi, api_url_of
from .log import quiet_the_hub_log
from .services import Services

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")
CONFIG_D_ENV = "GPUHUB_CONFIG_D"


def config_d_files(config_dir: str) -> list[str]:
    """Drop-in config files, in name order: ``$GPUHUB_CONFIG_D`` or ``jupyterhub_config.d/`` beside the config."""
    folder = os.environ.get(CONFIG_D_ENV) or os.path.join(config_dir, "jupyterhub_config.d")
    return sorted(glob.glob(os.path.join(folder, "*.py")))


def proxy_pid_file(state_dir: str) -> str:
    """Where the proxy's pid file goes: the state dir, so that a proxy that outlives a killed hub on a
    host is found again by the next hub process (``forget_stale_proxy_pid`` drops a stale one)."""
    return os.path.join(state_dir, "jupyterhub-proxy.pid")


def forget_stale_proxy_pid(path: str) -> None:
    """Remove the proxy's pid file when the process it names is not configurable-http-proxy. A hub
    container killed (``kill -9``) and started again keeps the file, and its pid now names another
    process of the new container: JupyterHub would take that for the proxy and wait for it forever."""
    try:
        with open(path) as f:
            pid = f.read().strip()
    except FileNotFoundError:
        return
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            if b"configurable-http-proxy" in f.read():
                return
    except (ValueError, OSError):  # not a pid, or no such process
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def apply_site_settings(c, path: str) -> Settings:
    """Load and validate the settings file at ``path`` and set the hub's config from it.
    A bad file stops the hub here with the reason (key, value, what is accepted)."""
    try:
        settings = load_settings(path)
    except SettingsError as e:
        raise SystemExit(f"gpuhub: the hub does not start: bad settings file.\n  {e}") from None
    hub, sp = settings.hub, settings.spawner

    c.JupyterHub.spawner_class = "gpuhub-swarm" if settings.engine.kind == "swarm" else "gpuhub"
    c.JupyterHub.authenticator_class = "gpuhub-native" if hub.authenticator == "native" else hub.authenticator
    apply_login(c, settings)  # "ldap", "oidc": gpuhub's, from [ldap] / [oidc]
    c.JupyterHub.bind_url = hub.bind_url
    c.JupyterHub.hub_bind_url = hub.hub_bind_url
    if hub.hub_connect_url:
        c.JupyterHub.hub_connect_url = hub.hub_connect_url
    c.JupyterHub.db_url = hub.db_url
    # An upgrade's new JupyterHub migrates its own tables at start (SQLite: after copying the file to
    # jupyterhub.sqlite.<date>.bak beside it), as gpuhub migrates its own; docs/admin.md "Upgrading".
    c.JupyterHub.upgrade_db = True
    # The edge (Caddy) in front sets X-Forwarded-Proto/-For; CHP appending its own would make the hub
    # and users' servers read "http" (tornado takes the last entry): no Secure cookies behind HTTPS.
    c.ConfigurableHTTPProxy.command = ["configurable-http-proxy", "--no-x-forward"]
    if settings.https.mode != "off":
        # behind HTTPS the login cookies are Secure by themselves (the request's protocol); the XSRF one too
        c.JupyterHub.tornado_settings = {"xsrf_cookie_kwargs": {"secure": True}}
    if hub.state_dir:
        c.JupyterHub.cookie_secret_file = os.path.join(hub.state_dir, "jupyterhub_cookie_secret")
        c.ConfigurableHTTPProxy.pid_file = proxy_pid_file(hub.state_dir)
        forget_stale_proxy_pid(c.ConfigurableHTTPProxy.pid_file)
    c.Authenticator.admin_users = set(hub.admin_users)
    if hub.admin_users:
        c.GPUHubAuthenticator.first_admin = hub.admin_users[0]  # the set above loses the order
    # Users' servers outlive a hub restart (a config change, an upgrade); the hub finds them again.
    c.JupyterHub.cleanup_servers = False

    c.GPUSpawner.site_settings = settings
    c.DockerSpawner.network_name = sp.network
    c.DockerSpawner.use_internal_ip = True
    if settings.engine.kind == "docker":  # (a Swarm service is always removed: SwarmSpawner has no such setting)
        c.DockerSpawner.remove = True  # a fresh container each start; the home lives in its volume
    c.DockerSpawner.allowed_images = list(sp.allowed_images)
    c.DockerSpawner.pull_policy = sp.pull_policy
    if settings.engine.kind == "swarm":
        c.GPUSwarmSpawner.pull_policy = "skip"  # the nodes pull from the registry, which the start checks
    c.Spawner.default_url = sp.default_url
    c.Spawner.start_timeout = sp.start_timeout
    c.Spawner.http_timeout = sp.start_timeout
    # gpuhub's own line ([admission]) bounds the starts; the hub-wide 429 would turn a class away
    c.JupyterHub.concurrent_spawn_limit = 0
    apply_admin(c, settings)
    own_token = hub_token(hub.state_dir)
    reporter_token = hub_token(hub.state_dir, "gpuhub-reporter-token") if settings.engine.kind == "swarm" else ""
    c.JupyterHub.services = services(settings, os.path.abspath(path), own_token, reporter_token)
    start_hub_tasks(settings, HubApi(api_url_of(hub.hub_bind_url), own_token), reporter_token)
    return settings


AGENT = "gpuhub-agent"
CULLER = "idle-culler"
HUB_ITSELF = "gpuhub-hub"
REPORTERS = "gpuhub-node-reporter"


def hub_token(state_dir: str, name: str = "gpuhub-hub-token") -> str:
    """A token the hub gives one of its own (its own API client ``hubapi``; the Swarm node reporters):
    made once and kept in ``state_dir`` as ``name`` (mode 0600, like the cookie secret), so restarts do
    not pile up tokens; without a state dir (or where it does not exist: the config read outside a
    hub), a new one per start."""
    if not state_dir or not os.path.isdir(state_dir):
        return secrets.token_hex(32)
    path = os.path.join(state_dir, name)
    try:
        with open(path) as f:
            token = f.read().strip()
        if len(token) >= 32:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def services(settings: Settings, settings_file: str, own_token: str, reporter_token: str = "") -> list[dict]:
    """The hub-managed services: ``gpuhub-agent`` (sessions' prewarm and stop, GPU-idle reclaim) and,
    with ``[culling] timeout``, jupyterhub-idle-culler; ``gpuhub-hub``, the hub process's own
    token (it re-serves the GPU starts a previous process left waiting); on a Swarm,
    ``gpuhub-node-reporter``, the token of the nodes' reporters (they run on the nodes, not here)."""
    environment = {SETTINGS_ENV: settings_file}
    if os.environ.get("DOCKER_HOST"):
        environment["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    found = [{"name": AGENT, "command": [sys.executable, "-m", "gpuhub.agent"], "environment": environment}]
    cull = settings.culling
    if cull.timeout:
        command = [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={cull.timeout}", f"--cull-every={cull.every}", f"--concurrency={cull.concurrency}",
        ]
        if cull.max_age:
            command.append(f"--max-age={cull.max_age}")
        found.append({"name": CULLER, "command": command})
    found.append({"name": HUB_ITSELF, "api_token": own_token, "display": False})
    if reporter_token:
        found.append({"name": REPORTERS, "api_token": reporter_token, "display": False})
    return found


def admin_roles(settings: Settings) -> list[dict]:
    """The RBAC roles of gpuhub's pages, API and services (see ``web.scopes`` for the scopes)."""
    hub = settings.hub
    admins = hub.admin_users if hub.gpu_admins is None else hub.gpu_admins
    return [
        {
            "name": "gpuhub-admin",
            "description": "gpuhub's GPU admin page and API, and the hub's /metrics",
            "scopes": [ADMIN, "read:metrics", "read:users", "read:groups"],
            "users": list(admins),
        },
        {
            "name": "gpuhub-viewer",
            "description": "gpuhub's GPU admin page and API, read-only",
            "scopes": [READ],
            "users": list(hub.gpu_viewers),
        },
        {
            "name": "gpuhub-instructor",
            "description": "gpuhub's classroom sessions: create them, manage your own",
            "scopes": [SESSIONS],
            "users": list(hub.instructors),
        },
        {
            "name": AGENT,
            "description": "gpuhub's agent: prewarms and stops sessions' servers, reclaims idle GPUs",
            "scopes": [ADMIN, "list:users", "read:users", "read:servers", "servers"],
            "services": [AGENT],
        },
        {
            "name": HUB_ITSELF,
            "description": "the hub process itself: starts again the GPU starts a previous process left waiting, stops borrowed servers taken back,"
            " records SSH sessions as activity",
            "scopes": ["servers", "read:users", "users:activity"],
            "services": [HUB_ITSELF],
        },
        {
            "name": REPORTERS,
            "description": "gpuhub's Swarm node reporters: report their node's GPUs, nothing else",
            "scopes": [REPORT],
            "services": [REPORTERS] if settings.engine.kind == "swarm" else [],
        },
        {
            "name": CULLER,
            "description": "jupyterhub-idle-culler: stops servers without activity",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": [CULLER] if settings.culling.timeout else [],
        },
    ]


def apply_admin(c, settings: Settings) -> None:
    """The admin pages' scopes, roles and templates (the pages themselves: ``serve_gpuhub_pages``)."""
    c.JupyterHub.custom_scopes = CUSTOM_SCOPES
    c.JupyterHub.load_roles = admin_roles(settings)
    c.JupyterHub.template_paths = [TEMPLATES]


def serve_gpuhub_pages(c, settings: Settings) -> None:
    """gpuhub's pages and REST API in the hub process (the wait lines and the allocation state live
    there), served by the authenticator (``GPUHubPages``: ``Authenticator.get_handlers``, the hook
    JupyterHub supports for in-hub handlers). Called last by jupyterhub_config.py, so that an
    authenticator a drop-in file chose serves them too."""
    c.JupyterHub.authenticator_class = with_gpuhub_pages(c.JupyterHub.authenticator_class)
    c.GPUHubPages.gpuhub_handlers = handlers(settings)


def start_hub_tasks(settings: Settings, hub_api: HubApi | None = None, reporter_token: str = "") -> None:
    """Start the services' background loops (``Services.start``) once JupyterHub runs. JupyterHub
    loads its config inside its running event loop; anywhere else (config tests, docs) nothing starts."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    quiet_the_hub_log()  # before JupyterHub applies this config
    loop.call_soon(quiet_the_hub_log)  # and on the handlers JupyterHub sets up after
    services = Services.for_settings(settings)
    metrics.register(lambda: services.accounting.metrics)
    loop.call_soon(services.start, hub_api, reporter_token)
