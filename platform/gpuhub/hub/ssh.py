"""The SSH gateway: ``ssh -p PORT alice@HUB`` into alice's own running server (``[ssh]``).

asyncssh (a maintained SSH implementation) does the protocol and the crypto; gpuhub only routes:

- **who**: public-key authentication only, against the keys alice registered (``hub.sshkeys``);
  passwords and keyboard-interactive are never offered; ``root`` and names that are not hub users
  never authenticate. ``alice`` reaches her default server, ``alice+NAME`` her server NAME.
- **where**: a shell, a command (``ssh alice@HUB nvidia-smi``) or the ``sftp`` subsystem (``sftp``,
  ``scp``) runs in her server's container through the engine (``docker exec``), as the server's user
  (``[spawner] uid``) in her home: her GPUs, limits and files, nothing of the hub's.
- **port forwarding** (``ssh -L``, what VS Code's Remote-SSH uses) reaches only the container's own
  loopback: a small relay runs in the container (``RELAY``). Remote forwarding, agent and X11
  forwarding are refused.
- every login, command and refusal is logged (``gpuhub ssh alice:(default) ...``), and while a
  session is open the server's activity is posted to the hub every ``ACTIVITY_SECONDS`` (inactivity
  culling and GPU-idle reclaim's ``require_inactive`` see it).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import asyncssh
from asyncssh.stream import SSHTCPStreamSession

from ..config.schema import Settings
from ..engine.base import Engine, ExecUnavailable
from ..engine.execstream import STDERR
from ..db.records import SshKey
from ..policy.network import policy_for
from .log import log

ACTIVITY_SECONDS = 60
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # Debian's openssh-sftp-server, in gpuhub's images
LOOPBACK = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1", "ip6-localhost": "::1"}
# [network] isolation: an SSH command runs through the image's start step, which waits for this start's
# network rules (a server still starting is "running"); an image without it runs the command as it is
AFTER_NETWORK_RULES = 'if command -v gpuhub-start >/dev/null 2>&1; then exec gpuhub-start "$@"; fi; exec "$@"'
PASSED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_TIME", "LC_NUMERIC", "COLORTERM")
# the relay of a forwarded connection, run in the container: its loopback port <-> stdin/stdout
RELAY = """
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"""


def split_login(login: str) -> tuple[str, str]:
    """``alice`` → (alice, ""), ``alice+gpu2`` → (alice, gpu2): the person and which of their servers."""
    user, _, server = login.partition("+")
    return user, server


def host_key(state_dir: str) -> asyncssh.SSHKey:
    """The gateway's host key, made once and kept in ``state_dir`` (mode 0600) so clients' known_hosts
    stay valid across restarts; without a state dir, a new one per start."""
    path = os.path.join(state_dir, "ssh_host_ed25519_key") if state_dir and os.path.isdir(state_dir) else ""
    if path and os.path.exists(path):
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
    else:
        log.warning("gpuhub ssh: no [hub] state_dir: a new host key each start (clients will warn that it changed)")
    return key


class SshGateway:
    def __init__(self, settings: Settings, engine: Engine, keys, clock, activity=None):
        self.settings = settings
        self.engine = engine
        self.keys = keys  # hub.sshkeys.SshKeyService
        self.clock = clock
        self.activity = activity  # async (user, server, when): posts the server's activity (the hub's own API)
        self._server = None

    async def start(self) -> None:
        ssh = self.settings.ssh
        self._server = await asyncssh.create_server(
            lambda: Gatekeeper(self), ssh.host, ssh.port, server_host_keys=[host_key(self.settings.hub.state_dir)],
            encoding=None, agent_forwarding=False, x11_forwarding=False, allow_scp=False, line_editor=False,
        )
        log.info("gpuhub ssh: listening on %s:%d (public keys only)", ssh.host or "*", ssh.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def run_in_server(self, user: str, server: str, command: list[str], tty: bool, environment: dict):
        """``command`` in the running container of ``user``'s ``server``: an ``ExecStream``, or the
        message for the client (str) when there is none."""
        name = f"{user}:{server or '(default)'}"
        try:
            container = await self.engine.server_container(user, server)
        except ExecUnavailable as e:
            return f"gpuhub: {e}.\r\n"
        if container is None:
            which = f"your server {server!r}" if server else "your server"
            return f"gpuhub: {which} is not running. Start it on the hub's home page first, then connect again.\r\n"
        spawner = self.settings.spawner
        log.debug("gpuhub ssh %s: running %s in %s", name, command[:1], container[:12])
        if policy_for(self.settings) is not None:  # nothing of the user's before the container's network rules
            command = ["/bin/sh", "-c", AFTER_NETWORK_RULES, "gpuhub-ssh", *command]
        return await self.engine.exec_in(container, command, tty, environment, f"{spawner.uid}:{spawner.uid}", spawner.home_path)

    async def end(self, process, marker: str, hang_up: bool) -> None:
        """After a session: its marker file removed; if the client left while the process still ran,
        SIGHUP to it (its process group: a terminal's), as sshd's closing of a terminal does."""
        script = 'kill -HUP -- -"$(cat "$0")" 2>/dev/null || kill -HUP "$(cat "$0")" 2>/dev/null; rm -f "$0"' if hang_up else 'rm -f "$0"'
        spawner = self.settings.spawner
        try:
            cleanup = await self.engine.exec_in(process.container, ["/bin/sh", "-c", script, marker], False, {}, f"{spawner.uid}:{spawner.uid}", "/")
            while await cleanup.read() is not None:
                pass
            cleanup.close()
        except Exception as e:  # the server stopped meanwhile: nothing left to end
            log.debug("gpuhub ssh: the session's end in %s: %s", process.container[:12], e)

    async def keep_active(self, user: str, server: str) -> None:
        """While a session is open: the server's activity, every ``ACTIVITY_SECONDS``."""
        while self.activity is not None:
            try:
                await self.activity(user, server, self.clock())
            except Exception as e:  # the hub busy or restarting: the next one
                log.debug("gpuhub ssh %s:%s: activity not posted: %s", user, server, e)
            await asyncio.sleep(ACTIVITY_SECONDS)


class Gatekeeper(asyncssh.SSHServer):
    """One SSH connection: who it is (their registered keys only) and what it may open."""

    def __init__(self, gateway: SshGateway):
        self.gateway = gateway
        self.peer = "?"
        self.user = self.server = ""
        self.key: SshKey | None = None
        self._conn: asyncssh.SSHServerConnection | None = None
        self._accepted: dict[str, SshKey] = {}  # login → the registered key last accepted for it

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"

    def begin_auth(self, username: str) -> bool:
        return True  # always: nobody gets in without a key

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        user, server = split_login(username)
        if not user or user == "root":
            log.warning("gpuhub ssh: refused %r from %s: not a person's login", username[:80], self.peer)
            return False
        fingerprint = key.get_fingerprint("sha256")
        match = next((k for k in await self.gateway.keys.of(user) if k.key.fingerprint == fingerprint), None)
        if match is None:
            log.warning("gpuhub ssh %s: refused key %s from %s: not one of theirs", user, fingerprint, self.peer)
            return False
        self._accepted[username] = match
        return True

    def auth_completed(self) -> None:
        # who: the login asyncssh authenticated (its signature checked), never merely the last key
        # offered: a client may offer keys for several logins before signing with one
        login = self._conn.get_extra_info("username")
        self.user, self.server = split_login(login)
        self.key = self._accepted[login]
        log.info("gpuhub ssh %s:%s: logged in from %s with key %d %s", self.user, self.server or "(default)", self.peer, self.key.id, self.key.key.fingerprint)
        asyncio.ensure_future(self.gateway.keys.used(self.key.id))

    def session_requested(self):
        return ServerSession(self.gateway, self.user, self.server)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        host = LOOPBACK.get(dest_host)
        if host is None:
            log.warning("gpuhub ssh %s: refused a forward to %s:%d (only the server's own loopback)", self.user, dest_host[:80], dest_port)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "only the server's own loopback (localhost) can be reached")
        log.info("gpuhub ssh %s:%s: forward to the server's %s:%d", self.user, self.server or "(default)", host, dest_port)
        return SSHTCPStreamSession(lambda reader, writer: self._relay(host, dest_port, reader, writer))

    async def _relay(self, host: str, port: int, reader, writer) -> None:
        process = await self.gateway.run_in_server(self.user, self.server, ["python3", "-c", RELAY, host, str(port)], False, {})
        if isinstance(process, str):
            writer.close()
            return
        await pump(process, reader, lambda stream, data: writer.write(data))
        process.close()
        writer.close()

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no listening on the hub for anyone


async def pump(process, read_input, write_output, writable: asyncio.Event | None = None, is_queue: bool = False) -> None:
    """Copy input (an asyncssh reader, or a queue of bytes ending with None) to the process's stdin and
    its output to ``write_output(stream, data)`` until it closes its output; ``writable``: cleared
    while the client's side cannot take more."""

    async def to_process() -> None:
        while True:
            data = await (read_input.get() if is_queue else read_input.read(65536))
            if not data:
                break
            await process.write(data)
        process.close_stdin()

    feeding = asyncio.ensure_future(to_process())
    try:
        while (piece := await process.read()) is not None:
            if writable is not None:
                await writable.wait()
            write_output(*piece)
    finally:
        feeding.cancel()


class ServerSession(asyncssh.SSHServerSession):
    """A shell, a command or sftp in the person's server, as the client asked."""

    def __init__(self, gateway: SshGateway, user: str, server: str):
        self.gateway, self.user, self.server = gateway, user, server
        self.name = f"{user}:{server or '(default)'}"
        self._chan = None
        self._command: str | None = None
        self._sftp = False
        self._term: str | None = None
        self._size = (0, 0)
        self._stdin: asyncio.Queue = asyncio.Queue()
        self._writable = asyncio.Event()
        self._writable.set()
        self._process = None
        self._task: asyncio.Task | None = None

    def connection_made(self, chan) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size, term_modes) -> bool:
        self._term, self._size = term_type, (term_size[0], term_size[1])
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self._sftp = subsystem == "sftp"
        return self._sftp

    def session_started(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def data_received(self, data: bytes, datatype) -> None:
        self._stdin.put_nowait(data)

    def eof_received(self) -> bool:
        self._stdin.put_nowait(None)
        return True  # keep the channel open for the process's output

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._size = (width, height)
        if self._process is not None:
            asyncio.ensure_future(self._process.resize(width, height))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc) -> None:
        if self._task is not None:
            self._task.cancel()

    def _what(self) -> tuple[list[str], str]:
        if self._sftp:
            return [SFTP_SERVER], "sftp"
        if self._command is not None:
            return ["/bin/bash", "-lc", self._command], f"command {self._command[:60]!r}"
        return ["/bin/bash", "-l"], "shell"

    async def _run(self) -> None:
        command, what = self._what()
        marker = f"/tmp/.gpuhub-ssh-{secrets.token_hex(8)}"  # the process's pid, for its end (``SshGateway.end``)
        command = ["/bin/sh", "-c", 'echo $$ > "$0"; exec "$@"', marker, *command]
        tty = self._term is not None and not self._sftp
        client_env = self._chan.get_environment() if self._chan else {}
        environment = {k: v for k, v in client_env.items() if k in PASSED_ENV and isinstance(v, str)}
        environment["TERM"] = self._term or "dumb"
        log.info("gpuhub ssh %s: %s%s", self.name, what, " (terminal)" if tty else "")
        activity = asyncio.ensure_future(self.gateway.keep_active(self.user, self.server))
        code, finished = 255, False
        try:
            process = await self.gateway.run_in_server(self.user, self.server, command, tty, environment)
            if isinstance(process, str):
                self._chan.write_stderr(process.encode())
                code = 1
                log.info("gpuhub ssh %s: refused %s: %s", self.name, what, process.strip())
                return
            self._process = process
            if tty:
                await process.resize(*self._size)

            def out(stream: int, data: bytes) -> None:
                (self._chan.write_stderr if stream == STDERR else self._chan.write)(data)

            await pump(process, self._stdin, out, self._writable, is_queue=True)
            code = await process.exit_code()
            code, finished = (255, False) if code is None else (code, True)
        except Exception:
            log.exception("gpuhub ssh %s: %s failed", self.name, what)
            self._chan.write_stderr(b"gpuhub: the session failed; the hub log says why\r\n")
        finally:
            activity.cancel()
            if self._process is not None:
                self._process.close()
                if not finished:
                    log.info("gpuhub ssh %s: the client left while its %s ran: hung up", self.name, what)
                asyncio.ensure_future(self.gateway.end(self._process, marker, hang_up=not finished))
            try:
                self._chan.exit(code)
            except (OSError, asyncssh.Error):
                pass
