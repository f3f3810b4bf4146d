"""Admission control: at most ``[admission] max_concurrent_starts`` servers starting at once.

A start holds a turn from container creation until its server answers HTTP (the part that loads the
engine and the host's CPUs); further starts wait in one FIFO line, with their place on the spawn
page, and go in order as turns free up (the line is a ``waitqueue.WaitQueue`` of one line). A
burst of 30 thus gets 30 servers, never a 429, and no start competes with 29 others for the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from ..contract import utcnow
from ..policy.errors import SpawnRefused
from .progress import StartProgress
from .waitqueue import WaitQueue, ordinal

LINE = "starts"
RECHECK_SECONDS = 5


class StartGate:
    """The hub process's one gate (``services.Services.starts``): every spawner shares it."""

    def __init__(self, slots: int, clock: Callable = utcnow):
        self.slots = slots
        self.running = 0
        self.queue = WaitQueue(clock)

    def describe(self, ticket) -> str:
        place, total = self.queue.position(ticket)
        return (
            f"waiting for a turn to start: {ordinal(place)} of {total} in line"
            f" ({self.running} server(s) starting, at most {self.slots} at once)"
        )

    @asynccontextmanager
    async def turn(self, holder: str, timeout: float, progress: StartProgress | None = None):
        """Wait in line for a turn (the place shown in ``progress`` as it changes), hold it for the
        ``async with`` body. Raises SpawnRefused (503) if no turn came within ``timeout``."""
        progress = progress or StartProgress()
        ticket = self.queue.join(LINE, holder)
        deadline = time.monotonic() + timeout
        try:
            while True:
                place, _ = self.queue.position(ticket)
                if place <= self.slots - self.running:
                    break
                progress.update(30, self.describe(ticket))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SpawnRefused(
                        503,
                        f"Too many servers were starting: no turn to start came within {int(timeout)} seconds"
                        f" (you were {ordinal(place)} in line). Try again in a few minutes",
                        why="capacity",
                    )
                await self.queue.wait_for_change(min(remaining, RECHECK_SECONDS))
            self.running += 1
        finally:
            self.queue.leave(ticket)  # wakes the others: the line moved
        try:
            yield
        finally:
            self.running -= 1
            self.queue.changed()
