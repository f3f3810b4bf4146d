"""A process run in a server's container (``docker exec``) with its standard streams on one socket,
for the SSH gateway (``hub.ssh``): what the client types goes to its stdin, its output comes back.

docker-py makes the exec and hands over the engine's socket (``exec_start(socket=True)``), on the
engine's worker thread; reading and writing that socket happen on the event loop. Without a terminal
the engine multiplexes stdout and stderr into frames (8-byte header: stream, 0, 0, 0, length), which
``read`` takes apart; with one, the output is the terminal's, as it comes.
"""

from __future__ import annotations

import asyncio
import socket
import struct

STDOUT, STDERR = 1, 2
READ_SIZE = 64 * 1024


def raw_socket(stream) -> socket.socket:
    """The socket under what docker-py's ``exec_start(socket=True)`` returns (a ``SocketIO`` over a
    Unix socket, or the socket itself)."""
    return getattr(stream, "_sock", stream)


class ExecStream:
    def __init__(self, engine, exec_id: str, stream, tty: bool, container: str = ""):
        self._engine = engine
        self.exec_id = exec_id
        self.container = container
        self.tty = tty
        self._sock = raw_socket(stream)
        self._sock.setblocking(False)
        self._buffer = b""
        self._eof = False

    async def write(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self._sock, data)

    def close_stdin(self) -> None:
        """End of input: the process reads EOF. Not with a terminal: the engine would end the whole
        stream (a terminal's input has no end, as with sshd: ^D is the person's to type)."""
        if self.tty:
            return
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await asyncio.get_running_loop().sock_recv(self._sock, READ_SIZE)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    async def read(self) -> tuple[int, bytes] | None:
        """The next piece of output: (``STDOUT`` or ``STDERR``, bytes); None once the process closed it."""
        if self.tty:
            if not self._buffer and not await self._fill():
                return None
            data, self._buffer = self._buffer, b""
            return STDOUT, data
        while len(self._buffer) < 8 or len(self._buffer) < 8 + struct.unpack(">I", self._buffer[4:8])[0]:
            if not await self._fill():
                return None
        stream, size = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
        data, self._buffer = self._buffer[8 : 8 + size], self._buffer[8 + size :]
        return (STDERR if stream == STDERR else STDOUT), data

    async def resize(self, width: int, height: int) -> None:
        """The terminal's new size; nothing if the process has ended already (the engine refuses then)."""
        from docker.errors import APIError

        if self.tty and width and height:
            try:
                await self._engine.call("exec_resize", self.exec_id, height=height, width=width)
            except APIError:
                pass

    async def exit_code(self) -> int | None:
        return (await self._engine.call("exec_inspect", self.exec_id)).get("ExitCode")

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
