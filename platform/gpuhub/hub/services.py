"""``Services``: the hub side's services, made once per hub process and shared by every spawner,
handler and background task.

| service | owns |
|---|---|
| ``allocation`` | allocations, the GPU wait lines and their wake-ups, the restart reconcile |
| ``quotas`` | quota rules (settings file + database), effective quotas, GPU-hours this week |
| ``sessions`` | classroom sessions and rosters, who may start one now, window boundaries |
| ``notices`` | what users' JupyterLab status bars show |
| ``accounting`` | usage reports, the weekly GPU-hours of running servers, the metrics' inputs |
| ``starts`` | admission control: the line for a turn to start (``admission.StartGate``) |
| ``homes`` | on a Swarm with homes on the nodes: which node each user's home lives on |
| ``borrowing`` | borrowed GPUs taken back for waiters within quota (``[borrowing]``) |
| ``ssh_keys`` | the public keys people register for SSH into their own servers (``[ssh]``) |
| ``ssh`` | the SSH gateway into people's running servers (``[ssh] port``; off at 0) |
| ``jobs`` | batch jobs: queued in the GPU lines, run in their own containers, their ends recorded (``[jobs]``) |

Each owns its worker thread and its wake-ups: a quota or session change wakes the GPU lines from
inside the quota or session service (wired here), never from a handler. ``engine`` is where servers
run (``gpuhub.engine``). Tests build their own ``Services`` with a fake engine, a database on a
temporary file and a clock they move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from ..config.schema import Settings
from ..contract import utcnow
from ..db.database import Database
from ..engine.base import Engine
from ..engine.docker import DockerEngine
from .accounting import AccountingService
from .admission import StartGate
from .borrowing import BorrowingService
from .allocation import AllocationService
from .database import DatabaseOpener
from ..policy.network import policy_for
from ..policy.services import helper_image, reporter_spec
from .homes import HomeService
from .jobs import JobService
from .hubapi import HubApi, api_url_of
from .log import log
from .notices import NoticeService
from .quotas import QuotaService
from .sessions import SessionService
from .ssh import SshGateway
from .sshkeys import SshKeyService


def engine_for(settings: Settings) -> Engine:
    """The engine ``[engine] kind`` names: this Docker host, or a Swarm's nodes."""
    if settings.engine.kind == "swarm":
        from ..engine.swarm import SwarmEngine

        return SwarmEngine(settings)
    return DockerEngine(settings.gpus)


class Services:
    _process: Services | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> Services:
        """The hub process's one set, made from the first caller's settings. (Not keyed by the settings
        object: traitlets gives every spawner its own deep copy of its config, and one set per spawner
        would mean one wait line and one reconcile per spawner.)"""
        if cls._process is None:
            cls._process = cls(settings)
        return cls._process

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        database: Database | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = settings
        self.clock = clock
        self.engine = engine or engine_for(settings)
        self.database = DatabaseOpener(settings.hub.db_url, database, clock)
        self.quotas = QuotaService(settings, self.database, clock)
        self.sessions = SessionService(self.database, clock)
        self.notices = NoticeService(clock)
        self.homes = HomeService(settings, self.database, self.engine)
        self.allocation = AllocationService(settings, self.database, self.engine, self.quotas, self.sessions, clock)
        self.accounting = AccountingService(settings, self.database, self.allocation, self.quotas, self.notices, clock)
        self.starts = StartGate(settings.admission.max_concurrent_starts, clock)
        self.borrowing = BorrowingService(settings, self.allocation, self.sessions, self.notices, clock)
        self.ssh_keys = SshKeyService(settings, self.database)
        self.ssh = SshGateway(settings, self.engine, self.ssh_keys, clock)
        self.jobs = JobService(settings, self.database, self.engine, self.allocation, clock)
        self.allocation.estimates.taken_back = self.borrowing.stop_times
        self.allocation.still_waiting.add(self.borrowing.changed)
        # every change that can let a waiter in wakes the GPU lines, from inside the service that made it
        self.quotas.changed.add(self.allocation.capacity_changed)
        self.sessions.changed.add(self.allocation.capacity_changed)
        self._tasks: list[asyncio.Task] = []

    def start(self, hub_api: HubApi | None = None, reporter_token: str = "") -> None:
        """Start the background loops (the accounting rounds, the window boundaries, the engine's node
        poll, taking borrowed GPUs back, the batch jobs left by a previous hub process) once, and the
        SSH gateway where ``[ssh] port`` is set; with the hub's own API (it also stops borrowed servers
        and records SSH sessions as activity), re-serve the GPU starts a previous hub process left
        waiting; on a Swarm, deploy the node reporters with their token and, with ``[network] isolation``,
        gpuhub-netguard on the other nodes."""
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self.accounting.run()),
                asyncio.ensure_future(self.sessions.run()),
                asyncio.ensure_future(self.engine.run()),
                asyncio.ensure_future(self.borrowing.run()),
                asyncio.ensure_future(self.jobs.run()),
            ]
            if hub_api is not None:
                self.borrowing.stopper = hub_api.stop_server
                self.ssh.activity = hub_api.post_activity
                self._tasks.append(asyncio.ensure_future(self._restore_waiters(hub_api)))
            if self.settings.ssh.port:
                self._tasks.append(asyncio.ensure_future(self._start_ssh()))
            if reporter_token and hasattr(self.engine, "deploy_reporters"):
                self._tasks.append(asyncio.ensure_future(self._deploy_reporters(reporter_token)))
            if policy_for(self.settings) is not None and hasattr(self.engine, "keep_netguards"):
                s = self.settings
                self.engine.keep_netguards(s.spawner.network, s.engine.node_docker_socket, helper_image(s))

    async def _start_ssh(self) -> None:
        try:
            await self.ssh.start()
        except Exception:
            log.exception("gpuhub ssh: the gateway did not start on port %d: nobody can SSH into their server", self.settings.ssh.port)

    async def _deploy_reporters(self, token: str) -> None:
        s = self.settings
        hub_api = api_url_of(s.hub.hub_connect_url or s.hub.hub_bind_url)
        spec = reporter_spec(s.gpus.inventory, s.reclaim.activity, s.engine.report_interval, helper_image(s), hub_api, s.spawner.network, s.spawner.uid)
        try:
            await self.engine.deploy_reporters(spec, token)
        except Exception:
            log.exception("gpuhub swarm: the node reporters were not deployed: no node will report its GPUs")

    async def _restore_waiters(self, hub_api: HubApi) -> None:
        if await hub_api.wait_until_up():
            await self.allocation.restore_waiters(hub_api.start_server)
        else:
            log.error("gpuhub: the hub's API at %s did not answer: the starts left waiting were not re-served", hub_api.api_url)
