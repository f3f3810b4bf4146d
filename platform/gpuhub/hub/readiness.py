"""When a started server answers: JupyterHub's own check, asked every ``POLL_SECONDS``.

``jupyterhub.utils.wait_for_http_server`` waits between its tries with an exponential backoff
(0.2 s doubling, with jitter, up to 5 s): a server that answers 4 s after its container started is
found up to 3 s late, and a start waits for that (benchmarks/boot.py measured "listening → ready"
at 1.7–3.5 s against 0.07 s for a plain poll). Here the same check (any non-5xx answer; the same
errors tolerated) runs in slices of ``POLL_SECONDS``, so a server is seen at most that late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from jupyterhub.utils import wait_for_http_server

POLL_SECONDS = 0.1
STOPPED_EVERY = 1.0  # how often ``stopped`` is asked (an engine call: not every poll)


class StoppedWhileStarting(RuntimeError):
    """The server's container ended before it answered; the message is ``stopped``'s answer (why)."""


async def wait_answering(
    url: str, timeout: float, poll: float = POLL_SECONDS, stopped: Callable[[], Awaitable[str | None]] | None = None
) -> None:
    """Return once ``url`` answers; ``TimeoutError`` after ``timeout`` seconds. ``stopped()``, asked
    every ``STOPPED_EVERY`` s beside the polls (a poll of a vanished address can hang on its connect for
    many seconds), says why the server can no longer answer (its container ended), or None: then
    ``StoppedWhileStarting`` at once rather than the whole timeout later."""
    answering = asyncio.ensure_future(_answering(url, timeout, poll))
    if stopped is None:
        return await answering
    watching = asyncio.ensure_future(_watch(stopped))
    try:
        done, _ = await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
        if answering in done:
            return answering.result()
        raise StoppedWhileStarting(watching.result())
    finally:
        for task in (answering, watching):
            task.cancel()


async def _answering(url: str, timeout: float, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await wait_for_http_server(url, timeout=min(poll, max(deadline - time.monotonic(), 0.01)))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Server at {url} didn't respond in {timeout} seconds") from None


async def _watch(stopped: Callable[[], Awaitable[str | None]]) -> str:
    while True:
        await asyncio.sleep(STOPPED_EVERY)
        why = await stopped()
        if why is not None:
            return why
