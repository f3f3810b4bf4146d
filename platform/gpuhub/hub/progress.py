"""``StartProgress``: what one start is doing now, for its spawn page.

One object per start, written by the services that make a start wait (the GPU line in
``allocation``, the line for a turn to start in ``admission``) and read by ``GPUSpawner.progress``,
which JupyterHub streams to the spawn page. It replaces flags on the spawner and callbacks into it.
"""

from __future__ import annotations

import asyncio


class StartProgress:
    def __init__(self, percent: int = 0, message: str = "Starting your server"):
        self.percent = percent
        self.message = message
        self.done = False  # the server got its turn to start: JupyterHub's own progress takes over
        self._changed = asyncio.Event()

    def update(self, percent: int, message: str) -> None:
        if (percent, message) != (self.percent, self.message):
            self.percent, self.message = percent, message
            self._notify()

    def finish(self) -> None:
        self.done = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def event(self) -> dict:
        return {"progress": self.percent, "message": self.message}

    async def events(self):
        """Each state once, as it changes, until ``finish``."""
        shown = None
        while True:
            changed = self._changed  # set by the next change after this state
            if self.event() != shown:
                shown = self.event()
                yield shown
            if self.done:
                return
            await changed.wait()
