"""Load: N simulated users log in, start a server, run code in a kernel and stop, on the composed platform.

    python benchmarks/load.py [--users 10,30,50] [--write]
    python benchmarks/load.py --logins [--users 50] [--write]

In the spirit of jupyterhub/hubtraf. One platform (``docker-compose up hub`` with the e2e tier's settings,
names prefixed ``gpuhubload``) serves every level in turn. The first admin logs in through the login form;
every simulated user signs up at /hub/signup and the admin approves it at /hub/authorize/NAME
(NativeAuthenticator's own path). Per level, N users are released together in one asyncio loop, each with
its own cookie jar, and do what a browser does: log in (login page, form POST, /hub/home for the session's
_xsrf cookie); POST /hub/api/users/NAME/server and poll the user model until ready; open the server
(OAuth), start a kernel, run code over its websocket, delete the kernel; DELETE the server and poll until
it is gone. Every request's latency is kept by kind, every failure with its step and reason. A 1-user
level runs first: the same-run baseline. Between levels everything is stopped and the homes removed.

``--logins``: the same journeys on three platforms in one run: native accounts with the password
check as NativeAuthenticator does it (bcrypt on the hub's event loop: gpuhub before issue 18, put back
by a drop-in config file) and as gpuhub does it (on worker threads at a lower priority), and accounts in
an LDAP directory (Debian's slapd, started here on the host's address on the engine's default bridge, which the
hub's container reaches: the password is checked by the directory, not hashed by the hub); the login and home
page figures side by side go between the ``load_logins`` markers of docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import re
import secrets
import ssl
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import docker
from yarl import URL

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.report import machine, percentile, write_section
from gpuhub.config.schema import parse_settings
from tests.directory_server import DirectoryServer
from tests.directory_server import missing as directory_missing
from tests.e2e.conftest import E2E_SETTINGS, composed_platform
from tests.e2e.conftest import PREFIX as E2E_PREFIX
from tests.hubprocess import USER_IMAGE, bridge_gateway, remove_prefixed

PREFIX, PROFILE = "gpuhubload", "cpu-load"
SETTINGS = E2E_SETTINGS.replace(E2E_PREFIX, PREFIX) + f'''
[[profiles]]
name = "{PROFILE}"
display_name = "CPU · load test"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "64M"
'''
SITE = parse_settings(SETTINGS)
DOC = REPO / "docs" / "reliability.md"
REQUEST_TIMEOUT = 60.0  # any one request
READY_TIMEOUT = SITE.admission.queue_timeout + SITE.spawner.start_timeout + 60.0  # after the hub's own give-up
GONE_TIMEOUT = 120.0  # stop request until the server is gone
POLL = 1.0  # user model polls while starting and stopping
CODE, RESULT = "sum(range(10**6))", "499999500000"
KINDS = ["login page", "login", "home page", "spawn request", "user model poll", "server open (oauth)",
         "kernel start", "websocket open", "execute round trip", "kernel delete", "stop request"]


class Failed(Exception):
    """A simulated user's step went wrong; the message is the reason reported."""


@dataclass
class Run:
    """What one level measured: latencies by kind, times to ready and to gone, failures (user, step, reason)."""

    users: int
    wall: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ready: list[float] = field(default_factory=list)
    gone: list[float] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)


def execute_request(code: str, username: str) -> dict:
    """A kernel's execute_request message (Jupyter's messaging protocol 5.3) for its websocket."""
    return {
        "header": {"msg_id": uuid.uuid4().hex, "username": username, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3",
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }


async def execute_reply(ws: aiohttp.ClientWebSocketResponse, msg_id: str) -> tuple[str, str | None]:
    """The reply's status and the output (result, stream or error) of the request ``msg_id``."""
    reply = output = None
    while reply is None or output is None:
        frame = await ws.receive(timeout=REQUEST_TIMEOUT)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise Failed(f"the kernel websocket closed ({frame.type.name}) before the reply")
        msg = json.loads(frame.data)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "execute_reply":
            reply = msg["content"]["status"]
        elif msg["msg_type"] == "execute_result":
            output = msg["content"]["data"].get("text/plain")
        elif msg["msg_type"] in ("stream", "error"):
            output = str(msg["content"].get("text") or msg["content"].get("evalue"))
    return reply, output


class User:
    """One simulated person with their own cookie jar (an aiohttp.ClientSession)."""

    def __init__(self, hub: str, name: str, password: str, run: Run | None = None, tls: ssl.SSLContext | None = None):
        self.hub, self.name, self.password, self.run, self.tls = hub, name, password, run or Run(0), tls
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(ssl=tls or True),
                                          timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))

    async def call(self, kind: str, method: str, path: str, expect=(200,), **kw) -> tuple[aiohttp.ClientResponse, str]:
        """One request, its latency kept under ``kind``; Failed unless its status is in ``expect``."""
        began = time.monotonic()
        async with self.http.request(method, self.hub + path, **kw) as r:
            body = await r.text()
        self.run.latency[kind].append(time.monotonic() - began)
        if r.status not in expect:
            raise Failed(f"{method} {path} answered {r.status}: {' '.join(body.split())[:160]}")
        return r, body

    def xsrf(self, path: str) -> dict:
        """The header JupyterHub's and Jupyter Server's pages send: the _xsrf cookie for ``path``."""
        morsel = self.http.cookie_jar.filter_cookies(URL(self.hub + path)).get("_xsrf")
        if morsel is None:
            raise Failed(f"no _xsrf cookie for {path}")
        return {"X-XSRFToken": morsel.value}

    async def login(self) -> None:
        await self.call("login page", "GET", "/hub/login")
        form = {"username": self.name, "password": self.password, "_xsrf": self.xsrf("/hub/")["X-XSRFToken"]}
        r, body = await self.call("login", "POST", "/hub/login", expect=(200, 302), data=form, allow_redirects=False)
        if r.status != 302 or "/hub/login" in r.headers.get("Location", ""):
            error = re.search(r'class="login_error">\s*([^<]*?)\s*<', body)
            raise Failed(f"login refused ({r.status}): {error.group(1) if error else r.headers.get('Location')}")
        await self.call("home page", "GET", "/hub/home")  # sets the logged-in session's _xsrf cookie

    async def server_model(self, name: str = "") -> dict | None:
        """The user's default server in their user model (None: no server, or no such hub user yet)."""
        r, body = await self.call("user model poll", "GET", f"/hub/api/users/{name or self.name}", expect=(200, 404))
        return json.loads(body).get("servers", {}).get("") if r.status == 200 else None

    async def start_server(self) -> None:
        began = time.monotonic()
        await self.call("spawn request", "POST", f"/hub/api/users/{self.name}/server", expect=(201, 202),
                        json={"profile": PROFILE}, headers=self.xsrf("/hub/"))
        while time.monotonic() - began < READY_TIMEOUT:
            server = await self.server_model()
            if server and server.get("ready"):
                self.run.ready.append(time.monotonic() - began)
                return
            if not server:
                raise Failed("the server went away while starting (the spawn failed; see the hub log)")
            await asyncio.sleep(POLL)
        raise Failed(f"not ready {READY_TIMEOUT:.0f} s after the spawn request")

    async def execute(self) -> None:
        base = f"/user/{self.name}"
        r, _ = await self.call("server open (oauth)", "GET", f"{base}/lab")
        if not r.url.path.startswith(base):
            raise Failed(f"opening the server ended at {r.url}")
        _, body = await self.call("kernel start", "POST", f"{base}/api/kernels", expect=(201,),
                                  json={"name": "python3"}, headers=self.xsrf(f"{base}/"))
        kernel = json.loads(body)["id"]
        began = time.monotonic()
        async with self.http.ws_connect(f"{self.hub.replace('http', 'ws', 1)}{base}/api/kernels/{kernel}/channels") as ws:
            self.run.latency["websocket open"].append(time.monotonic() - began)
            began, request = time.monotonic(), execute_request(CODE, self.name)
            await ws.send_json(request)
            reply, output = await execute_reply(ws, request["header"]["msg_id"])
        self.run.latency["execute round trip"].append(time.monotonic() - began)
        if reply != "ok" or output != RESULT:
            raise Failed(f"the execution answered {reply!r} with the output {output!r}")
        await self.call("kernel delete", "DELETE", f"{base}/api/kernels/{kernel}", expect=(204,),
                        headers=self.xsrf(f"{base}/"))

    async def stop_server(self) -> None:
        began = time.monotonic()
        await self.call("stop request", "DELETE", f"/hub/api/users/{self.name}/server", expect=(202, 204),
                        headers=self.xsrf("/hub/"))
        while time.monotonic() - began < GONE_TIMEOUT:
            if not await self.server_model():
                self.run.gone.append(time.monotonic() - began)
                return
            await asyncio.sleep(POLL)
        raise Failed(f"not gone {GONE_TIMEOUT:.0f} s after the stop request")

    async def journey(self, go: asyncio.Event) -> None:
        await go.wait()
        step = "login"
        try:
            await self.login()
            for step, action in (("spawn", self.start_server), ("kernel", self.execute), ("stop", self.stop_server)):  # noqa: B007 (the except reads it)
                await action()
        except Exception as e:  # whatever it was, a failure of this user: recorded, the others go on
            reason = str(e) if isinstance(e, Failed) else f"{type(e).__name__}: {e}"
            self.run.failures.append((self.name, step, reason.splitlines()[0]))
            print(f"  {self.name}: failed at {step}: {reason}", flush=True)
        finally:
            await self.http.close()


async def create_accounts(admin: User, names: list[str]) -> dict[str, str]:
    """Each name signs up at /hub/signup (anonymous); the admin approves it at /hub/authorize/NAME."""
    accounts = {}
    for name in names:
        password, person = secrets.token_urlsafe(16), User(admin.hub, name, "", tls=admin.tls)
        try:
            await person.call("setup", "GET", "/hub/signup")
            form = {"username": name, "signup_password": password, "signup_password_confirmation": password,
                    "_xsrf": person.xsrf("/hub/")["X-XSRFToken"]}
            _, body = await person.call("setup", "POST", "/hub/signup", data=form)
            if "sent to the admin" not in body:
                raise Failed(f"the signup of {name} was refused")
        finally:
            await person.http.close()
        await admin.call("setup", "GET", f"/hub/authorize/{name}", expect=(302,), allow_redirects=False)
        accounts[name] = password
    return accounts


async def stop_everything(admin: User, names: list[str]) -> None:
    """Between levels: stop what failed users left running, wait for the containers, remove the homes."""
    for name in names:
        if await admin.server_model(name):
            await admin.call("setup", "DELETE", f"/hub/api/users/{name}/server", expect=(202, 204, 400),
                             headers=admin.xsrf("/hub/"))
    client, deadline = docker.from_env(), time.monotonic() + GONE_TIMEOUT
    while time.monotonic() < deadline and any(  # the users' containers, not the hub's own (Compose v2 names)
        "com.docker.compose.project" not in c.labels
        for c in client.containers.list(all=True, filters={"name": f"^{PREFIX}-"})
    ):
        await asyncio.sleep(1)
    remove_prefixed(f"{PREFIX}-home")


def directory_accounts(directory: DirectoryServer):
    """``create_accounts`` for a hub that logs in through ``directory``: each name added there."""
    async def create(admin: User, names: list[str]) -> dict[str, str]:
        accounts = {name: secrets.token_urlsafe(16) for name in names}
        for name, password in accounts.items():
            directory.add_person(name, password)
        return accounts
    return create


async def drive(hub: str, admin_password: str, levels: list[int], ca: str | bool = True, create=create_accounts) -> list[Run]:
    """``levels`` of simultaneous users against ``hub`` (over HTTPS, its certificate checked against
    ``ca``, the platform's local CA); their accounts made by ``create(admin, names)``."""
    tls = ssl.create_default_context(cafile=ca) if isinstance(ca, str) else None
    admin = User(hub, "admin", admin_password, tls=tls)
    try:
        await admin.login()
        accounts = await create(admin, [f"load{i:03d}" for i in range(max(levels))])
        runs = []
        for users in levels:
            print(f"level: {users} user(s)", flush=True)
            run = Run(users)
            go = asyncio.Event()
            tasks = [asyncio.create_task(User(hub, n, accounts[n], run, tls).journey(go)) for n in list(accounts)[:users]]
            began = time.monotonic()
            go.set()  # everyone at once
            await asyncio.gather(*tasks)
            run.wall = time.monotonic() - began
            print(f"  done in {run.wall:.1f} s, {len(run.failures)} failure(s)", flush=True)
            runs.append(run)
            await stop_everything(admin, list(accounts))
        return runs
    finally:
        await admin.http.close()


# the password check on the event loop, as NativeAuthenticator has it (gpuhub before issue 18)
CHECK_ON_THE_LOOP = """from nativeauthenticator import NativeAuthenticator
from gpuhub.hub.auth import GPUHubAuthenticator


class PasswordCheckOnTheLoop(GPUHubAuthenticator):
    authenticate = NativeAuthenticator.authenticate


c.JupyterHub.authenticator_class = PasswordCheckOnTheLoop
"""


def measure(levels: list[int], config_d: dict | None = None) -> list[Run]:
    """The composed platform as the e2e tier starts it (``tests.e2e.conftest.composed_platform``),
    prefixed gpuhubload, with ``config_d`` drop-in files; the levels; then everything removed."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmp, composed_platform(Path(tmp), PREFIX, SETTINGS, config_d=config_d) as platform:
        try:
            return asyncio.run(drive(platform.url, platform.admin_password, levels, platform.ca))
        except BaseException:
            print(f"===== hub log =====\n{platform.logs()}", file=sys.stderr)
            raise


def measure_directory_logins(levels: list[int]) -> list[Run]:
    """As ``measure``, with ``[hub] authenticator = "ldap"`` and every account (the admin's too) in a
    slapd started here."""
    problem = directory_missing()
    if problem:
        sys.exit(f"--logins needs the LDAP directory: {problem}")
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-slapd-") as folder, DirectoryServer(Path(folder), bridge_gateway(docker.from_env())) as directory:
        settings = SETTINGS.replace("[hub]\n", '[hub]\nauthenticator = "ldap"\n', 1) + "\n" + directory.settings()
        with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-") as tmp, composed_platform(Path(tmp), PREFIX, settings) as platform:
            directory.add_person("admin", platform.admin_password)
            try:
                return asyncio.run(drive(platform.url, platform.admin_password, levels, platform.ca, directory_accounts(directory)))
            except BaseException:
                print(f"===== hub log =====\n{platform.logs()}", file=sys.stderr)
                raise


def secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f}"


def report(args, runs: list[Run]) -> str:
    rows = [("failures", lambda r: str(len(r.failures))), ("wall time, all users (s)", lambda r: secs(r.wall))]
    rows += [(f"time to ready, {'max' if p == 100 else f'p{p}'} (s)", lambda r, p=p: secs(percentile(r.ready, p)))
             for p in (50, 95, 100)]
    rows += [("time to gone after the stop request, p95 (s)", lambda r: secs(percentile(r.gone, 95)))]
    lines = ["| | " + " | ".join(f"{r.users} user(s)" + " (baseline)" * (r is runs[0]) for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    lines += [f"| {title} | " + " | ".join(fn(r) for r in runs) + " |" for title, fn in rows]
    for r in runs:
        lines += ["", f"**{r.users} user(s)**, latency of each request in ms:", "",
                  "| request | n | p50 | p90 | p95 | p99 | max |", "|---|---:|---:|---:|---:|---:|---:|"]
        for kind in KINDS:
            v = r.latency.get(kind, [])
            lines.append(f"| {kind} | {len(v)} | " + " | ".join(ms(percentile(v, p)) for p in (50, 90, 95, 99))
                         + f" | {ms(max(v, default=None))} |")
        lines += [""] * bool(r.failures) + [f"- failed at {step}: {user}: {reason}" for user, step, reason in r.failures[:10]]
    return f"""### Figures of the last run

- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `python benchmarks/load.py --users {args.users}{' --write' * args.write}`
- Machine: {machine()}
- Platform: `docker-compose up hub` (`gpuhub/hub:latest`, SQLite), the e2e tier's settings; every user starts profile
  `{PROFILE}` (`{USER_IMAGE}`, 0.5 CPU, 512M) on a new home volume; defaults `[admission] max_concurrent_starts =
  {SITE.admission.max_concurrent_starts}`, `[spawner] start_timeout = {SITE.spawner.start_timeout}`.
- A level's users start together (one asyncio loop, a cookie jar each): login form; spawn request (JupyterHub answers
  when the server is up or after its 10 s `slow_spawn_timeout`); user model polled every {POLL:g} s until ready; server
  opened (OAuth); kernel started; `{CODE}` over its websocket (round trip: request until reply and result); kernel
  deleted; server stopped, polled until gone. Levels run in turn on one hub, all stopped and homes removed in between;
  the 1-user level first, as the same-run baseline.
- A **failure** is a user whose journey stopped at a step (login, spawn, kernel, stop): an unexpected answer (login not
  redirected, spawn request not 201/202, server gone while starting, no kernel, execute reply not `ok` or a wrong
  result), a request error or no answer in {REQUEST_TIMEOUT:.0f} s, a server not ready {READY_TIMEOUT:.0f} s after its spawn
  request (past the hub's own admission and start timeouts) or not gone {GONE_TIMEOUT:.0f} s after its stop request. A
  user counts once, at its first failing step; the latencies include the answers of failed requests.

{chr(10).join(lines)}
"""


def logins_report(args, before: list[Run], after: list[Run], directory: list[Run]) -> str:
    """Login and home page figures of each level: native accounts checked on the event loop and on
    worker threads, and accounts in an LDAP directory."""
    lines = ["| level | figure | native accounts, password check on the event loop (before) | native, on worker threads at nice 10 (now) | LDAP directory (now) |",
             "|---|---|---:|---:|---:|"]
    for b, a, d in zip(before, after, directory):
        rows = [("login p50 (ms)", lambda r: ms(percentile(r.latency.get("login", []), 50))),
                ("login p95 (ms)", lambda r: ms(percentile(r.latency.get("login", []), 95))),
                ("login max (ms)", lambda r: ms(max(r.latency.get("login", []), default=None))),
                ("home page p95 (ms)", lambda r: ms(percentile(r.latency.get("home page", []), 95))),
                ("login page p95 (ms)", lambda r: ms(percentile(r.latency.get("login page", []), 95))),
                ("failures", lambda r: str(len(r.failures)))]
        lines += [f"| {b.users} user(s) | {title} | {fn(b)} | {fn(a)} | {fn(d)} |" for title, fn in rows]
    return f"""Run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, `python benchmarks/load.py --logins --users {args.users}{' --write' * args.write}`
on {machine()}: three platforms one after the other, the same journeys as above (every user logs in at once,
then starts, uses and stops a server): native accounts with NativeAuthenticator's own check, native accounts
as gpuhub ships, and accounts in an LDAP directory (slapd on this machine; `[hub] authenticator = "ldap"`). All three
with docker-compose.yml as it is (the hub and the edge at `cpu_shares: 4096`).

{chr(10).join(lines)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,30,50", help="levels, comma-separated (default 10,30,50)")
    parser.add_argument("--write", action="store_true", help=f"write the 'load' (or 'load_logins') section of {DOC.relative_to(REPO)}")
    parser.add_argument("--logins", action="store_true", help="native logins (the password check on the event loop, on worker threads) and LDAP logins, side by side")
    args = parser.parse_args()
    levels = [int(n) for n in args.users.split(",") if n.strip().isdigit() and int(n) > 0]
    if not levels or len(levels) != len(args.users.split(",")):
        parser.error("--users: comma-separated positive integers, e.g. 10,30,50")
    levels = [1] + [n for n in levels if n != 1]
    if args.logins:
        before = measure(levels, {"90-password-check-on-the-loop.py": CHECK_ON_THE_LOOP})
        after = measure(levels)
        text = logins_report(args, before, after, measure_directory_logins(levels))
    else:
        text = report(args, measure(levels))
    print(text)
    if args.write:
        if args.logins:
            write_section("load_logins", text, "## Logins at once: the password check off the event loop (`benchmarks/load.py --logins`)", doc=DOC)
        else:
            write_section("load", text, doc=DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
