"""How busy each GPU is, for the reclaim: one reading per round from NVML (the host's devices), from
a file (SIMULATED, for CI and demos; every message built from it says so), or on a Swarm from the
hub, which merges its nodes' reporters' readings. The readers are ``inventory.activity``'s.
"""

from __future__ import annotations

import asyncio

from ..contract import API_PREFIX
from ..inventory.activity import ActivityError, DeviceActivity, NvmlActivity, Reading, devices_from_json, read_file

__all__ = ["ActivityError", "DeviceActivity", "Reading", "read_file", "NvmlActivity", "HubActivity", "source_for"]


class HubActivity:
    """The reading of a hub on several hosts (Swarm): each node's reporter sends its devices' activity
    with its report; the hub merges the fresh ones (``GET /hub/api/gpuhub/v1/activity``). A node that
    sent none leaves its devices out: counted busy, never reclaimed on a guess."""

    def __init__(self, api):
        self.api = api

    async def read(self) -> Reading:
        from .hubapi import HubApiError

        try:
            data = await self.api.get(f"{API_PREFIX}/activity")
            return Reading(devices_from_json(data["devices"]), bool(data["simulated"]), data["source"])
        except (HubApiError, KeyError, TypeError) as e:
            raise ActivityError(f"the hub's node readings: {e}") from None


def source_for(spec: str, engine_kind: str = "docker", api=None):
    """The reader for the ``[reclaim] activity`` setting: an async callable returning a ``Reading``.
    On a Swarm (``engine_kind``) the nodes read ``spec`` and the hub merges their readings."""
    if engine_kind == "swarm":
        return HubActivity(api).read
    if spec.startswith("file:"):
        path = spec[len("file:"):]
        read = lambda: read_file(path)
    else:
        read = NvmlActivity().read

    async def in_a_thread() -> Reading:
        return await asyncio.get_running_loop().run_in_executor(None, read)

    return in_a_thread
