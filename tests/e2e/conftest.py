"""Browser tier: the composed platform (docker-compose.yml, the hub image, the user image) driven by
Playwright in Debian's Chromium.

Fixtures:
- ``platform`` (session): ``docker-compose -p gpuhube2e up -d hub`` with settings written for the run
  (own network, port, names prefixed ``gpuhube2e-``); everything is removed at the end.
- ``page`` (function): a fresh Chromium page; on failure a screenshot goes to build/e2e/.
"""

import os
import secrets
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from gpuhub.config.caddyfile import caddyfile
from gpuhub.config.schema import parse_settings
from tests.hubprocess import REPO, answers_within, free_port, remove_prefixed, require_engine_and_image, session_trusting

PREFIX = "gpuhube2e"
MISSING_IMAGE = "gpuhub/pytorch-cuda:2.7-cuda12.6"  # allowed, but never built on a host without GPUs
ARTIFACTS = REPO / "build" / "e2e"
LOCAL_CA = "/srv/edge/data/caddy/pki/authorities/local/root.crt"  # in the edge (XDG_DATA_HOME: docker-compose.yml)
# the [hub] table of a hub run by docker-compose.yml (this tier's, the swarm tier's)
COMPOSED_HUB_TABLE = '''
[hub]
bind_url = "http://:8000"
hub_bind_url = "http://0.0.0.0:8081"
hub_connect_url = "http://hub:8081"
db_url = "sqlite:////srv/gpuhub/data/jupyterhub.sqlite"
state_dir = "/srv/gpuhub/data"
admin_users = ["admin"]
'''
E2E_SETTINGS = COMPOSED_HUB_TABLE + f'''

[spawner]
network = "{PREFIX}-net"
allowed_images = ["gpuhub/pytorch-cuda:cpu", "{MISSING_IMAGE}"]
pull_policy = "never"
home_volume = "{PREFIX}-home-{{slug}}"
container_name = "{PREFIX}-{{slug}}"

[sessions]
course_volume = "{PREFIX}-course-{{session}}"

[gpus]
inventory = "file:/srv/gpuhub/inventory.toml"
exposure = "env-only"

[[profiles]]
name = "cpu-small"
display_name = "CPU · small"
description = "For notebooks and data exploration."
image = "gpuhub/pytorch-cuda:cpu"
mem_limit = "1G"
cpu_limit = 1
shm_size = "256M"
default = true

[[profiles]]
name = "cpu-large"
display_name = "CPU · large"
description = "More memory and cores for preprocessing."
image = "gpuhub/pytorch-cuda:cpu"
mem_limit = "2G"
cpu_limit = 2
shm_size = "512M"

[[profiles]]
name = "gpu-1"
display_name = "1 × GPU"
description = "A whole GPU."
image = "gpuhub/pytorch-cuda:cpu"
mem_limit = "2G"
gpus = 1
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-cuda"
display_name = "1 × GPU · CUDA 12.6"
description = "A profile whose image this host has not built (no registry here): shown disabled."
image = "{MISSING_IMAGE}"
mem_limit = "2G"
gpus = 1
gpu_mode = "exclusive"

[borrowing]
profiles = ["gpu-1"]
grace_period = 900

[ssh]
port = 2222
'''


E2E_INVENTORY = "".join(
    f'[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-{i:012d}"\nname = "NVIDIA H100 80GB HBM3"\nmemory = "80G"\n\n'
    for i in range(2)
)


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither 'docker compose' nor 'docker-compose' is installed: run `bash scripts/test`", pytrace=False)


@dataclass
class Platform:
    url: str
    admin_password: str
    compose: list
    env: dict
    ca: str | bool = True  # what requests verifies the hub's certificate with (the local CA's file)
    http_url: str = ""  # the edge's plain-HTTP port (a redirect to ``url``, or the hub with mode "off")

    def session(self) -> requests.Session:
        return session_trusting(self.ca)

    def logs(self, service: str = "hub") -> str:
        out = subprocess.run(
            [*self.compose, "logs", "--no-color", "--tail=80", service], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        return out.stdout + out.stderr


def local_ca_of(p: Platform, seconds: float = 30) -> str:
    """The edge's local CA certificate (PEM), as scripts/up copies it out; "" if none came."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = subprocess.run([*p.compose, "exec", "-T", "edge", "cat", LOCAL_CA], cwd=REPO, env=p.env, capture_output=True, text=True)
        if out.returncode == 0 and "BEGIN CERTIFICATE" in out.stdout:
            return out.stdout
        time.sleep(1)
    return ""


@contextmanager
def composed_platform(workdir: Path, prefix: str = PREFIX, settings: str = E2E_SETTINGS, inventory: str = E2E_INVENTORY, config_d: dict | None = None):
    """``docker-compose -p PREFIX up -d hub edge`` with ``settings`` (and a simulated ``inventory``)
    written to ``workdir``, its own network (``PREFIX-net``, created here: compose's file names it
    external), ports, password and name prefix; yields the healthy ``Platform``, reached through the
    edge as ``[https]`` says (by default HTTPS from the local CA, whose certificate is ``ca``; the
    edge's Caddyfile written as scripts/up writes it). ``config_d``: drop-in config files (name →
    text) for jupyterhub_config.d.
    Everything of the project (users' containers and volumes too) is removed at the end. Used by this
    tier and by ``benchmarks/load.py``."""
    port, https_port, ssh_port = free_port(), free_port(), free_port()
    settings = settings.replace("[ssh]\nport = 2222\n", f"[ssh]\nport = 2222\npublic_port = {ssh_port}\n")
    (workdir / "settings.toml").write_text(settings)
    (workdir / "config.d").mkdir(exist_ok=True)
    for name, text in (config_d or {}).items():
        (workdir / "config.d" / name).write_text(text)
    (workdir / "inventory.toml").write_text(inventory)
    https = parse_settings(settings).https
    (workdir / "Caddyfile").write_text(caddyfile(https))
    (workdir / "tls").mkdir(exist_ok=True)
    password = secrets.token_urlsafe(12)
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": prefix,
        "GPUHUB_SETTINGS_FILE": str(workdir / "settings.toml"),
        "GPUHUB_CONFIG_D": str(workdir / "config.d"),
        "GPUHUB_INVENTORY_FILE": str(workdir / "inventory.toml"),
        "GPUHUB_NETWORK": f"{prefix}-net",
        "GPUHUB_PORT": str(port),
        "GPUHUB_HTTPS_PORT": str(https_port),
        "GPUHUB_SSH_PORT": str(ssh_port),  # the hub's published SSH port: another run's must not collide
        "GPUHUB_BIND": "127.0.0.1",
        "GPUHUB_ADMIN_PASSWORD": password,
        "GPUHUB_CADDYFILE": str(workdir / "Caddyfile"),
        "GPUHUB_TLS_DIR": str(workdir / "tls"),
    }
    compose = compose_command()
    down = [*compose, "down", "-v", "--remove-orphans"]
    remove_network = ["docker", "network", "rm", env["GPUHUB_NETWORK"]]  # external to compose, as scripts/up makes it
    remove_prefixed(prefix)
    subprocess.run(down, cwd=REPO, env=env, capture_output=True)
    subprocess.run(remove_network, capture_output=True)
    subprocess.run(["docker", "network", "create", env["GPUHUB_NETWORK"]], check=True, capture_output=True)
    subprocess.run([*compose, "up", "-d", "--no-build", "hub", "edge"], cwd=REPO, env=env, check=True)
    http_url = f"http://127.0.0.1:{port}"
    p = Platform(url=http_url, admin_password=password, compose=compose, env=env, http_url=http_url)
    try:
        if https.mode == "local":
            p.url, p.ca = f"https://localhost:{https_port}", str(workdir / "local-ca.crt")
            root = local_ca_of(p)
            if not root:
                raise PlatformError(f"the edge made no local CA:\n{p.logs('edge')}")
            Path(p.ca).write_text(root)
        if not answers_within(f"{p.url}/hub/health", 120, session=p.session(), interval=1):
            raise PlatformError(f"the composed hub did not become healthy:\n{p.logs()}\n{p.logs('edge')}")
        yield p
    finally:
        # the spawned containers first: they hold the project's network
        remove_prefixed(prefix)
        subprocess.run(down, cwd=REPO, env=env, capture_output=True)
        subprocess.run(remove_network, capture_output=True)


class PlatformError(RuntimeError):
    pass


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    problem = require_engine_and_image()
    if problem:
        pytest.fail(f"the browser tier cannot run: {problem}", pytrace=False)
    if not shutil.which(os.environ.get("CHROMIUM_PATH") or "chromium"):
        pytest.fail("Chromium is missing: apt-get install chromium (or run `bash scripts/test`)", pytrace=False)
    try:
        with composed_platform(tmp_path_factory.mktemp("platform")) as p:
            yield p
    except PlatformError as e:
        pytest.fail(str(e), pytrace=False)


def launch_browser():
    """Debian's Chromium, headless, through Playwright's sync API (a generator: ``yield from`` it in a
    fixture). One at a time: the sync API refuses a second while one runs, so a fixture of a
    narrower scope (the swarm tier's) must be done before the e2e tier's starts.
    HTTP/1.1 only (``--disable-http2``): this Chromium runs on the Docker host, whose network
    interfaces change at every container start and stop, and Chromium closes its HTTP/2 sessions
    on such a change (a "Stop My Server" click failed with ERR_NETWORK_CHANGED). People's browsers
    are on other machines; the edge serves them HTTP/2."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=shutil.which(os.environ.get("CHROMIUM_PATH") or "chromium"),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-http2",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def browser():
    yield from launch_browser()


def browser_context(browser):
    """A fresh Chromium context (its own cookies), 1280×860; certificate errors ignored (``open_page``)."""
    return browser.new_context(viewport={"width": 1280, "height": 860}, ignore_https_errors=True)


def open_page(browser, request, logs=None):
    """A Chromium page (1280×860, 30 s timeouts) for one test; on failure a screenshot to build/e2e/
    and, with ``logs``, the hub's log. A generator: ``yield from`` it in a fixture.
    The hub's certificate comes from its own local CA, which this browser was not given (Chromium on
    Linux trusts only its NSS store): certificate errors are ignored here, and ``test_https`` checks
    the chain against the CA with Python's TLS, strictly."""
    context = browser_context(browser)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    failed = getattr(request.node, "rep_call", None) and request.node.rep_call.failed
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{request.node.name}.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot: {shot}" + (f"\n===== hub log =====\n{logs()}" if logs else ""))
    context.close()


@pytest.fixture
def page(browser, request, platform):
    yield from open_page(browser, request, platform.logs)


@pytest.fixture
def own_page(browser, request):
    """A Chromium page that needs no composed platform."""
    yield from open_page(browser, request)


@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    """Overrides pytest-jupyter's autouse loop fixture (its plugin is loaded for the server-extension
    handler tests and then applies to every test): Playwright's sync API runs its own event loop here,
    which that fixture would try to close."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    """Overrides pytest-jupyter's other autouse fixture, for the same reason."""
    yield None
