"""The operator's side of the e2e tier: ``Operator`` runs scripts/up, scripts/down, scripts/backup and
scripts/restore as an operator would, as its own compose project (``prefix``: its port, network,
state folder and names), from the repository's settings.toml with only those names changed."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import docker
import pytest
import requests

from tests.e2e.conftest import compose_command
from tests.hubprocess import REPO, free_port, login, remove_prefixed

PREFIX = "gpuhubop"
SPAWN_TIMEOUT = 180


def operator_settings(prefix: str = PREFIX, tree: Path = REPO) -> str:
    """The settings.toml of ``tree`` (this repository's, or a previous release's) with this test's
    names (network, containers, volumes)."""
    text = (tree / "settings.toml").read_text()
    for pattern, replacement in [
        (r'(?m)^network = "gpuhub"', f'network = "{prefix}-net"'),
        (r'(?m)^home_volume = "gpuhub-home-\{slug\}"', f'home_volume = "{prefix}-home-{{slug}}"'),
        (r'(?m)^container_name = "gpuhub-\{slug\}"', f'container_name = "{prefix}-{{slug}}"'),
    ]:
        text, n = re.subn(pattern, replacement, text)
        assert n == 1, f"settings.toml no longer has {pattern!r}: update this test"
    return text + f'\n[sessions]\ncourse_volume = "{prefix}-course-{{session}}"\n'


class Operator:
    """Runs scripts/up and scripts/down as an operator would, with this test's environment."""

    def __init__(self, workdir: Path, prefix: str = PREFIX):
        self.workdir = workdir
        self.prefix = prefix
        (workdir / "settings.toml").write_text(operator_settings(prefix))
        self.port, self.https_port = free_port(), free_port()
        # HTTPS from the local CA (settings.toml's default [https]); scripts/up copies its certificate out
        self.url = f"https://localhost:{self.https_port}"
        self.ca = str(workdir / "state" / "local-ca.crt")
        self.password = secrets.token_urlsafe(12)
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": prefix,
            "GPUHUB_NETWORK": f"{prefix}-net",
            "GPUHUB_PORT": str(self.port),
            "GPUHUB_HTTPS_PORT": str(self.https_port),
            "GPUHUB_SSH_PORT": str(free_port()),
            "GPUHUB_BIND": "127.0.0.1",
            "GPUHUB_ADMIN_PASSWORD": self.password,
            "GPUHUB_STATE_DIR": str(workdir / "state"),
            "GPUHUB_SETTINGS_FILE": str(workdir / "settings.toml"),
            "GPUHUB_BACKUP_DIR": str(workdir / "backups"),
        }
        self.compose = compose_command()
        self.docker = docker.from_env()
        self.up_output = ""
        self.tree_changes = ("", "")

    def script(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def hub_container(self):
        found = self.docker.containers.list(
            all=True, filters={"label": [f"com.docker.compose.project={self.prefix}", "com.docker.compose.service=hub"]}
        )
        return found[0] if found else None

    def user_container(self, user: str = "admin"):
        found = self.docker.containers.list(all=True, filters={"name": f"^{self.prefix}-{user}-"})
        return found[0] if found else None

    def volumes(self) -> set[str]:
        return {v.name for v in self.docker.volumes.list() if v.name.startswith(self.prefix)}

    def logs(self) -> str:
        out = subprocess.run(
            [*self.compose, "logs", "--no-color", "--tail=60", "hub"], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        return out.stdout + out.stderr

    def clean(self) -> None:
        remove_prefixed(self.prefix)  # the users' containers (they hold the network) and homes
        subprocess.run([*self.compose, "--profile", "postgres", "down", "-v", "--remove-orphans"],
                       cwd=REPO, env=self.env, capture_output=True)
        subprocess.run(["docker", "network", "rm", f"{self.prefix}-net"], capture_output=True)
        for name in self.volumes():
            subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)


def said(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"


def admin_token(op: Operator) -> str:
    session, r = login(op, "admin", op.password)
    assert r.status_code == 302, f"the admin could not log in: {r.status_code} {r.text[:300]}"
    r = session.post(f"{op.url}/hub/api/users/admin/tokens", json={"note": "operate test", "expires_in": 3600},
                     headers={"X-XSRFToken": session.cookies.get("_xsrf", "")}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def start_server(op: Operator, token: str, profile: str) -> dict:
    auth = {"Authorization": f"token {token}"}
    r = requests.post(f"{op.url}/hub/api/users/admin/server", json={"profile": profile}, headers=auth, timeout=60, verify=op.ca)
    assert r.status_code in (201, 202), f"{r.status_code} {r.text}\n{op.logs()}"
    deadline = time.monotonic() + SPAWN_TIMEOUT
    while time.monotonic() < deadline:
        server = requests.get(f"{op.url}/hub/api/users/admin", headers=auth, timeout=30, verify=op.ca).json()["servers"].get("")
        assert server, f"the server is gone (the spawn failed):\n{op.logs()}"
        if server.get("ready"):
            return server
        time.sleep(1)
    pytest.fail(f"the server was not ready after {SPAWN_TIMEOUT} s:\n{op.logs()}")


class Api:
    """The hub's REST API with ``token`` (the admin's), at the operator's URL of the moment; a call
    asserts its status is in ``ok`` and shows the hub's log when not."""

    def __init__(self, op: Operator, token: str):
        self.op, self.token = op, token

    def __call__(self, method: str, path: str, ok=(200, 201, 204), **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kw.pop("headers", {})}
        r = requests.request(method, f"{self.op.url}{path}", headers=headers, timeout=60, verify=self.op.ca, **kw)
        assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text[:400]}\n{self.op.logs()}"
        return r

    def stop_server(self, user: str = "admin", timeout: float = 120) -> None:
        """Stop ``user``'s server and wait until the hub has no server of theirs."""
        self("DELETE", f"/hub/api/users/{user}/server", ok=(202, 204))
        deadline = time.monotonic() + timeout
        while self("GET", f"/hub/api/users/{user}").json()["servers"]:
            assert time.monotonic() < deadline, f"{user}'s server did not stop within {timeout} s"
            time.sleep(1)
