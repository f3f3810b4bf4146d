"""``Worker``: one thread for a component's blocking calls (the database, NVML, the Docker engine),
awaited from the event loop. Each service and the engine own one, so a slow read in one (a usage
report over a year) never holds up another (an allocation)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial


class Worker:
    def __init__(self, name: str):
        self.name = name
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)

    async def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on this worker's thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))
