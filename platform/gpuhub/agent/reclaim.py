"""GPU-idle reclaim: which GPU servers sat idle long enough to be warned, then stopped; and the
readings behind it sent to the hub each round, reclaim on or off (GPU-hours held against busy).

Pure part (``HeldServer``, ``is_busy``, ``stop_time``, ``warning``): a server's idle time starts at
the later of its start and the last round that saw one of its devices busy; it is stopped at
``idle_timeout`` (``session_idle_timeout`` for a classroom session's server) past that, or, with
``require_inactive``, not before that long after its last JupyterHub activity; it is warned
``warn_before`` ahead. ``Reclaimer.round`` applies it through the hub's API: notices the user's
JupyterLab shows, ``DELETE /users/{name}/servers/{server}`` (the spawner releases the GPU, the home
volume stays).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config.schema import Reclaim
from ..contract import API_PREFIX, notices_path, parse_time
from ..policy.durations import duration_text
from .activity import ActivityError, Reading
from .hubapi import HubApiError, q


@dataclass(frozen=True)
class HeldServer:
    allocation: int
    user: str
    server: str
    session: str
    uuids: tuple[str, ...]
    started: datetime
    last_activity: datetime | None


def hub_time(text: str | None) -> datetime | None:
    """A time in the hub's API (ISO 8601 with Z) as naive UTC; None where the hub gave none."""
    return parse_time(text) if text else None


def is_busy(held: HeldServer, reading: Reading, threshold: int) -> bool:
    """Any of its devices above ``threshold`` percent, or not measured (never reclaimed on a guess)."""
    for uuid in held.uuids:
        device = reading.devices.get(uuid)
        if device is None or device.utilisation is None or device.utilisation > threshold:
            return True
    return False


def stop_time(held: HeldServer, idle_since: datetime, settings: Reclaim) -> datetime | None:
    """When the server is to be stopped if its GPUs stay idle; None: never (reclaim off for it)."""
    timeout = settings.session_idle_timeout if held.session and settings.session_idle_timeout else settings.idle_timeout
    if not timeout:
        return None
    at = idle_since + timedelta(seconds=timeout)
    if settings.require_inactive and held.last_activity is not None:
        at = max(at, held.last_activity + timedelta(seconds=settings.require_inactive))
    return at


def memory_held(held: HeldServer, reading: Reading) -> int:
    return sum(reading.devices[u].memory.get(held.allocation, 0) for u in held.uuids if u in reading.devices)


def warning(held: HeldServer, reading: Reading, idle_since: datetime, stop_at: datetime, now: datetime, threshold: int) -> str:
    gib = memory_held(held, reading) / 1024**3
    memory = f", {gib:.1f} GiB of GPU memory held" if gib >= 0.05 else ""
    simulated = " [SIMULATED GPU reading]" if reading.simulated else ""
    return (
        f"Your GPU has been idle for {duration_text((now - idle_since).total_seconds())}"
        f" (utilisation at most {threshold} %{memory}). This server will be stopped at"
        f" {stop_at:%H:%M} UTC to free the GPU for others; your files are kept."
        f" Use the GPU to keep it.{simulated}"
    )


def held_servers(devices: list[dict], users: list[dict]) -> list[HeldServer]:
    """The GPU servers running now: the admin API's device rows joined with the users' server models."""
    by_allocation: dict[int, dict] = {}
    for row in devices:
        for h in row.get("holders", []):
            entry = by_allocation.setdefault(h["allocation"], {**h, "uuids": []})
            entry["uuids"].append(row["uuid"])
    servers = {(u["name"], name): s for u in users for name, s in (u.get("servers") or {}).items()}
    found = []
    for allocation, h in sorted(by_allocation.items()):
        server = servers.get((h["user"], h["server"]))
        if not server or not server.get("ready"):
            continue  # starting, stopping, or gone
        found.append(
            HeldServer(
                allocation,
                h["user"],
                h["server"],
                h.get("session") or "",
                tuple(h["uuids"]),
                hub_time(server.get("started")) or hub_time(h.get("since")),
                hub_time(server.get("last_activity")),
            )
        )
    return found


class Reclaimer:
    def __init__(self, api, settings: Reclaim, read_activity, log):
        self.api = api
        self.settings = settings
        self.read_activity = read_activity
        self.log = log
        self.last_busy: dict[int, datetime] = {}
        self.warned: dict[int, str] = {}  # allocation -> user, while a warning is posted
        self._unread = False  # the last reading failed (said once as a warning while reclaim is off)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.idle_timeout or self.settings.session_idle_timeout)

    async def round(self, now: datetime, users: list[dict]) -> dict:
        """One reading of every GPU server's devices, sent to the hub (its usage counts GPU-hours held
        against busy, reclaim on or off), then the reclaim's check; what it did (for logs and tests)."""
        done = {"warned": [], "stopped": [], "busy": [], "idle": [], "read": 0}
        devices = (await self.api.get(f"{API_PREFIX}/gpus"))["devices"]
        servers = held_servers(devices, users)
        if servers:
            try:
                reading = await self.read_activity()
            except ActivityError as e:
                log = self.log.warning if self.enabled or not self._unread else self.log.debug
                log("gpuhub-agent reclaim: no device reading this round: %s", e)
                self._unread = True
                return done
            self._unread = False
            done["read"] = await self._send(servers, reading)
        if not self.enabled:
            return done
        threshold = self.settings.busy_utilisation
        for held in servers:
            name = f"{held.user}:{held.server or '(default)'}"
            if is_busy(held, reading, threshold):
                self.last_busy[held.allocation] = now
                done["busy"].append(name)
                if held.allocation in self.warned:
                    await self._clear(held)
                continue
            idle_since = max(self.last_busy.get(held.allocation, held.started), held.started)
            stop_at = stop_time(held, idle_since, self.settings)
            if stop_at is None:
                continue
            if now >= stop_at:
                await self._stop(held, name, idle_since, now)
                done["stopped"].append(name)
            elif now >= stop_at - timedelta(seconds=self.settings.warn_before):
                message = warning(held, reading, idle_since, stop_at, now, threshold)
                await self.api.call("POST", notices_path(held.user), {"source": "reclaim", "level": "warn", "message": message})
                if held.allocation not in self.warned:
                    self.log.warning("gpuhub-agent reclaim %s (allocation %d): warned: %s", name, held.allocation, message)
                self.warned[held.allocation] = held.user
                done["warned"].append(name)
            else:
                done["idle"].append(name)
        live = {h.allocation for h in servers}
        for allocation in [a for a in self.last_busy if a not in live]:
            del self.last_busy[allocation]
        for allocation, user in list(self.warned.items()):
            if allocation not in live:
                del self.warned[allocation]
                await self._clear_user(user)
        return done

    async def _send(self, servers: list[HeldServer], reading: Reading) -> int:
        """The reading of each held device (busy above ``busy_utilisation``; unmeasured ones left out) to
        the hub's usage (``POST .../usage/readings``); how many records it reached."""
        threshold = self.settings.busy_utilisation
        rows = [
            {"allocation": held.allocation, "uuid": uuid, "busy": device.utilisation > threshold}
            for held in servers
            for uuid in held.uuids
            if (device := reading.devices.get(uuid)) is not None and device.utilisation is not None
        ]
        if not rows:
            return 0
        try:
            answer = await self.api.call("POST", f"{API_PREFIX}/usage/readings", {"simulated": reading.simulated, "devices": rows})
        except HubApiError as e:
            self.log.warning("gpuhub-agent: the hub did not take this round's device readings: %s", e)
            return 0
        return answer["records"] if isinstance(answer, dict) else 0

    async def _clear(self, held: HeldServer) -> None:
        self.warned.pop(held.allocation, None)
        self.log.info("gpuhub-agent reclaim %s:%s: its GPU is busy again; warning withdrawn", held.user, held.server)
        await self._clear_user(held.user)

    async def _clear_user(self, user: str) -> None:
        if user not in self.warned.values():
            await self.api.call("DELETE", f"{notices_path(user)}?source=reclaim")

    async def _stop(self, held: HeldServer, name: str, idle_since: datetime, now: datetime) -> None:
        idle = duration_text((now - idle_since).total_seconds())
        self.log.warning("gpuhub-agent reclaim %s (allocation %d): GPU idle for %s: stopping the server (files kept)", name, held.allocation, idle)
        path = f"/users/{q(held.user)}/servers/{q(held.server)}" if held.server else f"/users/{q(held.user)}/server"
        try:
            await self.api.call("DELETE", path)
        except HubApiError as e:
            self.log.warning("gpuhub-agent reclaim %s: the stop failed: %s", name, e)
            return
        self.warned.pop(held.allocation, None)
        self.last_busy.pop(held.allocation, None)
        await self._clear_user(held.user)
