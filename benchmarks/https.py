"""HTTPS at the edge: what the TLS terminator in front of the hub (Caddy, ``[https]``) adds to a request.

    python benchmarks/https.py [--requests 200] [--write]

One platform as the e2e tier composes it (``tests.e2e.conftest.composed_platform``: HTTPS with a
certificate from the edge's local CA), the admin's server running (profile ``cpu-small``). The same
requests, one after the other, three ways:

- **edge, kept-alive**: through the edge over HTTPS on one kept-alive connection (as a browser does);
- **edge, new connection**: through the edge with a new TCP connection and TLS handshake for every
  request (the worst case: a client that keeps nothing);
- **hub directly**: plain HTTP to the hub container's proxy port on the platform's network, no edge
  (what the hub answered before HTTPS was the default).

Requests: the hub's health check (no database), the REST API's user list with the admin's token (a
database read), a static file (JupyterHub's logo), and a kernel over its websocket: opening it (a
new connection each time) and an execute round trip on it (``1+1``: what every cell of a notebook
takes). Latencies in ms; the figures go between the ``https`` markers of docs/benchmarks.md. A report,
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import re
import socket
import ssl
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import aiohttp
import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.load import Failed, execute_reply, execute_request
from benchmarks.report import machine, percentile, write_section
from tests.e2e.conftest import PREFIX, composed_platform
from tests.hubprocess import login

STATIC = "/hub/static/images/jupyterhub-80.png"
READY_TIMEOUT = 300
WAYS = ["edge, kept-alive", "edge, new connection", "hub directly"]


def hub_address(prefix: str) -> str:
    """The hub container's address on the platform's network (``PREFIX-net``), its proxy's port."""
    labels = [f"com.docker.compose.project={prefix}", "com.docker.compose.service=hub"]
    (hub,) = docker.from_env().containers.list(filters={"label": labels})
    return f"http://{hub.attrs['NetworkSettings']['Networks'][f'{prefix}-net']['IPAddress']}:8000"


def tls_version(url: str, tls: ssl.SSLContext) -> str:
    """The protocol version the edge agrees with a client like this one ("TLSv1.3")."""
    where = urllib.parse.urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as raw, tls.wrap_socket(raw, server_hostname=where.hostname) as conn:
        return conn.version()


def admin_token(platform) -> str:
    session, r = login(platform, "admin", platform.admin_password)
    if r.status_code != 302:
        raise Failed(f"the admin could not log in: {r.status_code}")
    r = session.post(f"{platform.url}/hub/api/users/admin/tokens", json={"note": "benchmarks/https.py", "expires_in": 3600},
                     headers={"X-XSRFToken": session.cookies.get("_xsrf", "")}, timeout=30)
    if r.status_code != 201:
        raise Failed(f"no token for the admin: {r.status_code} {r.text[:200]}")
    return r.json()["token"]


class Way:
    """One way to the hub: its base URL and an aiohttp session (kept-alive or not)."""

    def __init__(self, base: str, token: str, tls: ssl.SSLContext | None, keep_alive: bool):
        self.base = base
        self.http = aiohttp.ClientSession(
            headers={"Authorization": f"token {token}"},
            connector=aiohttp.TCPConnector(ssl=tls or False, force_close=not keep_alive, limit=1),
            timeout=aiohttp.ClientTimeout(total=60))

    async def timed(self, method: str, path: str, expect: tuple = (200,), **kw) -> tuple[float, str]:
        began = time.monotonic()
        async with self.http.request(method, self.base + path, **kw) as r:
            body = (await r.read()).decode(errors="replace")
        took = time.monotonic() - began
        if r.status not in expect:
            raise Failed(f"{method} {self.base}{path} answered {r.status}: {body[:200]}")
        return took, body

    async def kernel(self, requests: int) -> tuple[list[float], list[float]]:
        """Opens of a kernel's websocket (a new connection each) and execute round trips on one."""
        _, body = await self.timed("POST", "/user/admin/api/kernels", expect=(201,), json={"name": "python3"})
        kernel = re.search(r'"id":\s*"([^"]+)"', body).group(1)
        url = f"{self.base.replace('http', 'ws', 1)}/user/admin/api/kernels/{kernel}/channels"
        opens, trips = [], []
        try:
            for _ in range(max(requests // 10, 5)):
                began = time.monotonic()
                async with self.http.ws_connect(url):
                    opens.append(time.monotonic() - began)
            async with self.http.ws_connect(url) as ws:
                for _ in range(requests):
                    began, request = time.monotonic(), execute_request("1+1", "admin")
                    await ws.send_json(request)
                    reply, output = await execute_reply(ws, request["header"]["msg_id"])
                    trips.append(time.monotonic() - began)
                    if (reply, output) != ("ok", "2"):
                        raise Failed(f"the kernel answered {reply!r} with {output!r}")
        finally:
            await self.timed("DELETE", f"/user/admin/api/kernels/{kernel}", expect=(204,))
        return opens, trips


async def start_admin_server(way: Way) -> None:
    await way.timed("POST", "/hub/api/users/admin/server", expect=(201, 202), json={"profile": "cpu-small"})
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        _, body = await way.timed("GET", "/hub/api/users/admin")
        if '"ready": true' in body or '"ready":true' in body:
            return
        await asyncio.sleep(1)
    raise Failed(f"the admin's server was not ready in {READY_TIMEOUT} s")


async def drive(platform, requests: int) -> dict:
    """{way: {request: latencies}}, and "tls": the protocol version the edge agreed."""
    tls = ssl.create_default_context(cafile=platform.ca)
    token = admin_token(platform)
    ways = {WAYS[0]: Way(platform.url, token, tls, True), WAYS[1]: Way(platform.url, token, tls, False),
            WAYS[2]: Way(hub_address(PREFIX), token, None, True)}
    figures: dict[str, dict[str, list[float]]] = {way: {} for way in ways}
    try:
        figures["tls"] = tls_version(platform.url, tls)
        await start_admin_server(ways[WAYS[0]])
        for name, way in ways.items():
            print(f"{name}: {way.base}", flush=True)
            for kind, path in (("hub health check", "/hub/health"), ("REST API: user list (token)", "/hub/api/users"),
                               ("static file (JupyterHub's logo)", STATIC)):
                await way.timed("GET", path)  # the first (a connection to open) not counted
                figures[name][kind] = [(await way.timed("GET", path))[0] for _ in range(requests)]
            if name != WAYS[1]:  # a websocket is one connection, kept: the kept-alive way covers the edge
                figures[name]["kernel websocket: open"], figures[name]["kernel websocket: execute round trip"] = await way.kernel(requests)
        return figures
    finally:
        for way in ways.values():
            await way.http.close()


def report(args, figures: dict) -> str:
    kinds = list(figures[WAYS[0]])
    lines = ["| request | " + " | ".join(f"{w}: p50 / p95" for w in WAYS) + " |", "|---|" + "---:|" * len(WAYS)]
    for kind in kinds:
        cells = []
        for way in WAYS:
            v = figures[way].get(kind)
            cells.append(f"{percentile(v, 50) * 1000:.1f} / {percentile(v, 95) * 1000:.1f}" if v else "(as kept-alive)")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return f"""Run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, `python benchmarks/https.py --requests {args.requests}{' --write' * args.write}`
on {machine()}. The composed platform (hub and edge; HTTPS from the edge's local CA, {figures["tls"]}), the admin's server
running; each request {args.requests} times one after the other (websocket opens {max(args.requests // 10, 5)} times), latencies in ms.
"Edge" is `https://localhost:PORT` through Caddy; "hub directly" is plain HTTP to the hub container's proxy port on its
network, no edge (the way the hub was reached before HTTPS was the default).

{chr(10).join(lines)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind, each way (default 200)")
    parser.add_argument("--write", action="store_true", help="write the 'https' section of docs/benchmarks.md")
    args = parser.parse_args()
    if args.requests < 10:
        parser.error("--requests: at least 10")
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-https-") as tmp, composed_platform(Path(tmp)) as platform:
        try:
            figures = asyncio.run(drive(platform, args.requests))
        except BaseException:
            print(f"===== hub log =====\n{platform.logs()}", file=sys.stderr)
            raise
    text = report(args, figures)
    print(text)
    if args.write:
        write_section("https", text, "## HTTPS at the edge (`benchmarks/https.py`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
