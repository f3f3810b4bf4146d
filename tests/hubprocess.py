"""A real JupyterHub process on this host, spawning real containers on the local Docker engine.

Used by the integration tier and by ``benchmarks/spawn_latency.py``. The hub loads the repository's
own ``jupyterhub_config.py`` with a settings file and a drop-in folder written for the run, so what
runs is what users run; only names (a per-run prefix), ports and sizes differ.

    with HubProcess(workdir, prefix="gpuhubtest") as hub:
        hub.create_user("alice")
        hub.start_server("alice", {"profile": "cpu-test"})
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import requests

REPO = Path(__file__).resolve().parent.parent
USER_IMAGE = os.environ.get("GPUHUB_TEST_IMAGE", "gpuhub/pytorch-cuda:cpu")

DATASET_VOLUME = "gpuhubtest-dataset"
TEST_PROFILES = f'''
[[datasets]]
name = "refdata"
source = "{DATASET_VOLUME}"
target = "/datasets/ref"

[[profiles]]
name = "cpu-test"
display_name = "CPU test"
image = "{USER_IMAGE}"
mem_limit = "768M"
cpu_limit = 0.5
shm_size = "256M"
default = true

[[profiles]]
name = "cpu-test-big"
image = "{USER_IMAGE}"
mem_limit = "1G"
cpu_limit = 1
shm_size = "128M"

[[profiles]]
name = "cpu-data"
image = "{USER_IMAGE}"
mem_limit = "768M"
cpu_limit = 0.5
shm_size = "128M"
datasets = ["refdata"]

[[profiles]]
name = "gpu-1"
image = "{USER_IMAGE}"
gpus = 1
gpu_mode = "exclusive"
'''


def answers_within(url: str, seconds: float, session=requests, interval: float = 0.5, alive=lambda: True) -> bool:
    """Whether GET ``url`` answers 2xx within ``seconds`` (False at once when ``alive()`` turns False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        try:
            if session.get(url, timeout=2).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(interval)
    return False


def session_trusting(ca: str | bool = True) -> requests.Session:
    """A requests session that checks certificates against ``ca`` (a PEM file; True: the system's).
    With a file it ignores the environment: requests lets ``REQUESTS_CA_BUNDLE`` override a session's
    own ``verify``."""
    s = requests.Session()
    s.verify = ca
    s.trust_env = ca is True
    return s


def login(hub, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Log in through the real login form, as a browser does: a session holding the cookies, and the
    form POST's response (302 when the password was right)."""
    s = session_trusting(getattr(hub, "ca", True))  # a composed platform's local CA
    page = s.get(f"{hub.url}/hub/login", timeout=10)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    r = s.post(
        f"{hub.url}/hub/login",
        data={"_xsrf": xsrf, "username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    return s, r


def token_of(hub, user: str) -> str:
    """An API token of ``user`` (created if missing), with the user's own permissions, for an hour."""
    hub.create_user(user)
    r = hub.api("POST", f"/users/{user}/tokens", {"note": "test", "expires_in": 3600}, expect=201)
    return r.json()["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bridge_gateway(client: docker.DockerClient) -> str:
    """The host's address on Docker's default bridge: containers on it reach the hub API there."""
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return config["Gateway"]
    # Some engines leave Gateway out of IPAM; Docker gives the bridge the subnet's first address.
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


class HubError(RuntimeError):
    pass


# gpuhub-netguard, as a site runs it beside its engine (docker-compose.yml's netguard service), here a host
# process: the users' containers' network rules ([network], on by default). One for the whole test process,
# whatever its hubs do (a hub killed and started again, several hubs at once), stopped when it exits.
_netguard: subprocess.Popen | None = None
NETGUARD_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpuhub-netguard-{os.getpid()}.log"


def start_netguard() -> None:
    global _netguard
    if _netguard is None or _netguard.poll() is not None:
        _netguard = subprocess.Popen(
            [sys.executable, "-m", "gpuhub.netguard", "--hub-on-host"], stdout=open(NETGUARD_LOG, "ab"), stderr=subprocess.STDOUT,
        )


def stop_netguard() -> None:
    if _netguard is not None and _netguard.poll() is None:
        _netguard.terminate()
        try:
            _netguard.wait(20)
        except subprocess.TimeoutExpired:
            _netguard.kill()


atexit.register(stop_netguard)


class HubProcess:
    """Start ``jupyterhub`` from the repository's config; talk to its REST API with a service token.

    ``spawner`` is ``"gpuhub"`` (the product) or ``"docker"`` (plain DockerSpawner, for benchmarks).
    """

    def __init__(
        self,
        workdir: Path,
        prefix: str = "gpuhubtest",
        spawner: str = "gpuhub",
        admin_password: str | None = None,
        extra_config: str = "",
        profiles: str = TEST_PROFILES,
        db_url: str | None = None,
    ):
        self.workdir = Path(workdir)
        self.prefix = prefix
        self.spawner = spawner
        # None: a random password for the run; "": leave GPUHUB_ADMIN_PASSWORD unset (the hub generates one)
        self.admin_password = secrets.token_urlsafe(12) if admin_password is None else admin_password
        self.token = secrets.token_hex(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.docker = docker.from_env()
        self.extra_config = extra_config
        self.profiles = profiles
        self.session_settings = ""  # more keys of the [sessions] table
        self.hub_settings = ""  # more keys of the [hub] table
        self.more_settings = ""  # more tables, after the profiles
        self.extra_env: dict[str, str] = {}  # more of the hub's environment (a secret named by the settings)
        self.start_timeout = 120  # [spawner] start_timeout: also how long a started server has to answer
        self.extra_images: list[str] = []  # allowed besides the user image
        self.db_url = db_url or f"sqlite:///{self.workdir}/jupyterhub.sqlite"
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "jupyterhub.log"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"

    # --- files the hub reads -----------------------------------------------------------------
    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        gateway = bridge_gateway(self.docker)
        self.hub_port = free_port()  # the hub API's, on the bridge's gateway: where users' containers reach it
        (self.workdir / "settings.toml").write_text(
            f'''
[hub]
bind_url = "{self.url}"
hub_bind_url = "http://{gateway}:{self.hub_port}"
db_url = "{self.db_url}"
state_dir = "{self.workdir}"
admin_users = ["admin"]
{self.hub_settings}

[spawner]
network = "bridge"
allowed_images = {json.dumps([USER_IMAGE, *self.extra_images])}
pull_policy = "never"
home_volume = "{self.prefix}-home-{{slug}}"
container_name = "{self.prefix}-{{slug}}"
start_timeout = {self.start_timeout}

[https]
mode = "off"  # a hub process without the edge in front: plain HTTP on loopback

[sessions]
course_volume = "{self.prefix}-course-{{session}}"
{self.session_settings}
{self.profiles}
{self.more_settings}'''
        )
        config_d = self.workdir / "config.d"
        config_d.mkdir(exist_ok=True)
        plain = ""
        if self.spawner == "docker":
            # The baseline: plain DockerSpawner on the same image, network and naming, none of gpuhub's policy.
            plain = f'''
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = {USER_IMAGE!r}
c.DockerSpawner.name_template = "{self.prefix}-{{username}}"
c.DockerSpawner.volumes = {{"{self.prefix}-home-{{username}}": "/home/jovyan"}}
# the same caps as the default profile "cpu-test", so only gpuhub's own work differs
c.DockerSpawner.mem_limit = "768M"
c.DockerSpawner.cpu_limit = 0.5
'''
        (config_d / "50-test-harness.py").write_text(
            f'''
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
# gpuhub defines its own services (gpuhub-agent, idle-culler) and roles; a drop-in extends them
c.JupyterHub.services.extend([{{"name": "gpuhub-harness", "api_token": {self.token!r}}}])
c.JupyterHub.load_roles.extend([{{
    "name": "gpuhub-harness",
    "scopes": ["admin:users", "admin:servers", "admin:groups", "servers", "access:servers", "read:users", "tokens"],
    "services": ["gpuhub-harness"],
}}])
c.JupyterHub.log_level = "DEBUG"
{plain}
{self.extra_config}
'''
        )

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> HubProcess:
        if not (self.workdir / "settings.toml").exists():
            self.write_config()
        env = {
            **os.environ,
            "GPUHUB_SETTINGS": str(self.workdir / "settings.toml"),
            "GPUHUB_CONFIG_D": str(self.workdir / "config.d"),
            "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
            **self.extra_env,
        }
        if self.admin_password:
            env["GPUHUB_ADMIN_PASSWORD"] = self.admin_password
        else:
            env.pop("GPUHUB_ADMIN_PASSWORD", None)
        log = open(self.log_path, "ab")
        if self.spawner == "gpuhub":
            start_netguard()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if answers_within(f"{self.url}/hub/health", timeout, interval=0.3, alive=lambda: self.process.poll() is None):
            return self
        if self.process.poll() is not None:
            raise HubError(f"jupyterhub exited with {self.process.returncode}:\n{self.log_tail()}")
        raise HubError(f"jupyterhub did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # configurable-http-proxy outlives a killed hub; its pid file is in the state dir.
        from gpuhub.hub.hubconfig import proxy_pid_file

        pid_file = Path(proxy_pid_file(str(self.workdir)))
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ValueError, ProcessLookupError):
                pass

    @contextlib.contextmanager
    def running(self):
        """The hub started; at the end stopped and everything it made on the engine removed."""
        try:
            self.start()
            yield self
        finally:
            self.stop()
            self.remove_docker_objects()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no hub log)"

    # --- REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, body=None, expect=None) -> requests.Response:
        r = self.session.request(method, f"{self.url}/hub/api{path}", json=body, timeout=60)
        if expect is not None and r.status_code != expect:
            raise HubError(f"{method} {path} -> {r.status_code} (expected {expect}): {r.text}\n{self.log_tail(30)}")
        return r

    def create_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{requests.utils.quote(name, safe='')}")
        if r.status_code not in (201, 409):
            raise HubError(f"creating {name!r}: {r.status_code} {r.text}")

    def start_server(self, name: str, options: dict | None = None, timeout: float = 120) -> requests.Response:
        """Ask for a server; wait until it is ready. Returns the spawn request's response."""
        r = self.api("POST", f"/users/{requests.utils.quote(name, safe='')}/server", options or {})
        if r.status_code not in (201, 202):
            return r
        self.wait_ready(name, timeout)
        return r

    def wait_ready(
        self, name: str, timeout: float = 120, session: requests.Session | None = None, poll: float = 0.5
    ) -> dict:
        """Poll the user model until the default server is ready; HubError if it fails or times out.
        Threads pass their own ``session`` (a requests.Session is not thread-safe)."""
        url = f"{self.url}/hub/api/users/{requests.utils.quote(name, safe='')}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = (session or self.session).get(url, timeout=30)
            if not r.ok:
                raise HubError(f"GET {url} -> {r.status_code}: {r.text[:200]}")
            server = r.json().get("servers", {}).get("")
            if not server:
                raise HubError(f"{name}'s server is gone (spawn failed?):\n{self.log_tail(40)}")
            if server.get("ready"):
                return server
            time.sleep(poll)
        raise HubError(f"{name}'s server not ready after {timeout}s:\n{self.log_tail(40)}")

    def stop_server(self, name: str, timeout: float = 60) -> None:
        r = self.api("DELETE", f"/users/{requests.utils.quote(name, safe='')}/server")
        if r.status_code not in (202, 204):
            raise HubError(f"stopping {name}: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{requests.utils.quote(name, safe='')}", expect=200).json()
            if not model.get("servers"):
                return
            time.sleep(0.3)
        raise HubError(f"{name}'s server did not stop in {timeout}s")

    def user_server_url(self, name: str) -> str:
        return f"{self.url}/user/{requests.utils.quote(name, safe='')}/"

    # --- Docker objects of this run ------------------------------------------------------------
    def containers(self):
        return self.docker.containers.list(all=True, filters={"name": f"^{self.prefix}-"})

    def volumes(self):
        return [v for v in self.docker.volumes.list() if v.name.startswith(f"{self.prefix}-")]

    def container_logs(self) -> str:
        out = []
        for c in self.containers():
            out.append(f"--- {c.name} ({c.status})\n{c.logs(tail=60).decode(errors='replace')}")
        return "\n".join(out) or "(no containers)"

    def remove_docker_objects(self) -> None:
        remove_prefixed(self.prefix)


def live_allocations(hub) -> list[tuple[int, str, str]]:
    """(allocation id, username, device UUID) of every live GPU allocation, read from the hub's
    database (SQLite or PostgreSQL). None yet: the hub creates gpuhub's tables when first needed."""
    import sqlalchemy as sa

    engine = sa.create_engine(hub.db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as db:
            if not sa.inspect(db).has_table("gpuhub_allocations"):
                return []
            query = sa.text(
                "SELECT a.id, a.username, d.uuid FROM gpuhub_allocations a"
                " JOIN gpuhub_allocation_devices d ON d.allocation_id = a.id WHERE a.released IS NULL"
            )
            return [tuple(row) for row in db.execute(query)]
    finally:
        engine.dispose()


def container_of(hub, user: str, server: str = ""):
    """The one container of ``user``'s server (by gpuhub's labels), as a docker-py object."""
    found = [
        c for c in hub.containers()
        if c.labels.get("org.gpuhub.user") == user and c.labels.get("org.gpuhub.server", "") == server
    ]
    assert len(found) == 1, (user, server, [c.name for c in hub.containers()])
    return found[0]


def remove_prefixed(prefix: str) -> None:
    """Remove every container and volume whose name starts with ``prefix-`` (leftovers of a crashed run)."""
    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"name": f"^{prefix}-"}):
        c.remove(force=True)
    for v in client.volumes.list():
        if v.name.startswith(f"{prefix}-"):
            v.remove(force=True)


def fresh_engine_or_fail(tier: str, prefix: str) -> None:
    """For a tier's hub fixture: fail the tier, saying what to do, when the engine or the user image
    is missing; then remove the leftovers of an earlier run named ``prefix-``."""
    import pytest

    problem = require_engine_and_image()
    if problem:
        pytest.fail(f"the {tier} tier cannot run: {problem}", pytrace=False)
    remove_prefixed(prefix)


def require_engine_and_image() -> str | None:
    """None when the Docker engine answers and the user image exists; else what to do."""
    if shutil.which("docker") is None:
        return "docker is not installed: run `bash scripts/test` (it installs and starts what is missing)"
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # docker-py raises several types for "no engine"
        return f"no Docker engine answers ({e}): start dockerd, or run `bash scripts/test`"
    try:
        client.images.get(USER_IMAGE)
    except docker.errors.ImageNotFound:
        return f"image {USER_IMAGE} is missing: run `bash images/build.sh cpu`"
    return None


if __name__ == "__main__":  # a quick manual run: python tests/hubprocess.py
    import tempfile

    with HubProcess(Path(tempfile.mkdtemp())) as hub:
        print(json.dumps({"url": hub.url, "admin_password": hub.admin_password}))
        input("hub running; press enter to stop")
