"""The hub's own REST API, called from inside the hub process with a token of its own (the
``gpuhub-hub`` service, ``hubconfig``): for what only JupyterHub's request machinery does right,
starting a user's server with its progress, proxy route and spawn-page state. Used to re-serve the
GPU starts a previous hub process left waiting (``AllocationService.restore_waiters``)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..db.records import Waiter
from .log import log


def api_url_of(hub_bind_url: str) -> str:
    """Where this process reaches its own API: ``hub_bind_url`` with a wildcard host made loopback."""
    parts = urlsplit(hub_bind_url)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{parts.port or 8081}/hub/api"


def _server_path(username: str, server_name: str) -> str:
    user = quote(username, safe="")
    return f"/users/{user}/servers/{quote(server_name, safe='')}" if server_name else f"/users/{user}/server"


class HubApi:
    def __init__(self, api_url: str, token: str):
        self.api_url = api_url
        self._headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}

    async def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        try:
            r = await AsyncHTTPClient().fetch(
                self.api_url + path, method=method, headers=self._headers,
                body=None if body is None else json.dumps(body), request_timeout=60,
            )
            return r.code, r.body.decode(errors="replace")
        except HTTPClientError as e:
            return e.code, e.response.body.decode(errors="replace") if e.response is not None else str(e)

    async def wait_until_up(self, seconds: float = 120) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                code, _ = await self._request("GET", "/")
                if code == 200:
                    return True
            except OSError:
                pass
            await asyncio.sleep(0.5)
        return False

    async def start_server(self, waiter: Waiter) -> tuple[bool, str]:
        """Ask the hub to start ``waiter``'s server with its options: (True, "") once the start is under
        way, else (False, the hub's answer)."""
        path = _server_path(waiter.username, waiter.server_name)
        return self._answer("POST", path, await self._request("POST", path, waiter.options), (201, 202))

    async def stop_server(self, username: str, server_name: str) -> tuple[bool, str]:
        """Ask the hub to stop a server (JupyterHub's stop: the spawner's, then its GPU is released):
        (True, "") once stopped or stopping, else (False, the hub's answer: a start still under way
        cannot be stopped yet)."""
        path = _server_path(username, server_name)
        return self._answer("DELETE", path, await self._request("DELETE", path), (202, 204))

    async def post_activity(self, username: str, server_name: str, when) -> None:
        """The server's activity now (JupyterHub's ``POST /users/NAME/activity``): an SSH session is
        use of the server, which inactivity culling and GPU-idle reclaim must see."""
        path = f"/users/{quote(username, safe='')}/activity"
        when_text = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"last_activity": when_text, "servers": {server_name: {"last_activity": when_text}}}
        ok, why = self._answer("POST", path, await self._request("POST", path, body), (200, 204))
        if not ok:
            raise RuntimeError(why)

    def _answer(self, method: str, path: str, answer: tuple[int, str], ok: tuple[int, ...]) -> tuple[bool, str]:
        code, text = answer
        if code in ok:
            return True, ""
        try:
            text = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            pass
        log.debug("gpuhub: %s %s answered %s: %s", method, path, code, text)
        return False, f"{code}: {text}"
