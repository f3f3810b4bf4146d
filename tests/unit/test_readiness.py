"""When a started server answers (``hub.readiness``): a real HTTP server on loopback that starts
listening after a delay is seen within a poll of it (JupyterHub's own backoff found it up to seconds
late); a server that never answers times out with the URL named."""

import asyncio
import socket
import time

import pytest
from tornado import web
from tornado.httpserver import HTTPServer

from gpuhub.hub.readiness import POLL_SECONDS, STOPPED_EVERY, StoppedWhileStarting, wait_answering


class Api(web.RequestHandler):
    def get(self):
        self.write("{}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("delay", [0.0, 0.9, 3.1])  # JupyterHub's backoff alone: tries near 1.4 s and 3 s, then waits up to 3.2 s
async def test_a_server_is_seen_within_a_poll_of_answering(delay):
    port = free_port()
    server = HTTPServer(web.Application([(r"/.*", Api)]))
    listening_at = None

    async def listen_later():
        nonlocal listening_at
        await asyncio.sleep(delay)
        server.listen(port, "127.0.0.1")
        listening_at = time.monotonic()

    task = asyncio.ensure_future(listen_later())
    try:
        await wait_answering(f"http://127.0.0.1:{port}/", timeout=10)
        late = time.monotonic() - listening_at
        assert late < 1.0, f"seen {late:.2f} s after it listened (polls every {POLL_SECONDS} s)"
    finally:
        await task
        server.stop()


async def test_a_server_that_never_answers_times_out_naming_it():
    port = free_port()
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}/ didn't respond in 1 seconds"):
        await wait_answering(f"http://127.0.0.1:{port}/", timeout=1)
    assert time.monotonic() - began < 2


async def test_a_container_that_ended_while_starting_is_said_at_once_not_after_the_timeout():
    port = free_port()
    asked = []

    async def stopped():
        asked.append(time.monotonic())
        return "exit status 75: gpuhub: this container's network rules were not in place" if len(asked) >= 2 else None

    began = time.monotonic()
    with pytest.raises(StoppedWhileStarting, match="exit status 75: gpuhub: this container's network rules"):
        await wait_answering(f"http://127.0.0.1:{port}/", timeout=60, stopped=stopped)
    assert len(asked) == 2 and time.monotonic() - began < 2 * STOPPED_EVERY + 1
    assert asked[1] - asked[0] >= STOPPED_EVERY * 0.9  # the engine is asked once a second, not every poll
