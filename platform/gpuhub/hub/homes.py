"""The home service: which node each user's home lives on, on a Swarm with ``[engine] homes = "node"``
(``db.homes``), and moving a home between nodes.

A home on a node is a Docker volume there: a server elsewhere would get an empty volume of the same
name, and two copies would drift apart. So every server of a user runs on their home's node: a
start is placed only there (``for_start``), the first server's node becomes the home (``settle``,
the first one wins), and only a move (``move``, no server running) changes it.
"""

from __future__ import annotations

from ..config.schema import Settings
from ..db.homes import HomeStore
from ..db.records import Home
from ..policy.errors import SpawnRefused
from ..engine.base import Engine
from ..engine.swarm import HomeMoveFailed
from ..policy.containers import home_volume_name
from ..policy.nodes import NodeStatus
from ..policy.services import helper_image
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log


class HomeService:
    def __init__(self, settings: Settings, database: DatabaseOpener, engine: Engine):
        self.settings = settings
        self.engine = engine
        self._run = StoreCalls(database, HomeStore, Worker("gpuhub-homes"))
        self._moving: set[str] = set()

    async def where(self, username: str) -> Home | None:
        return await self._run("get", username)

    async def all(self) -> list[Home]:
        return await self._run("all")

    async def for_start(self, username: str, statuses: list[NodeStatus]) -> Home | None:
        """The home a start must run beside (None: no home yet). Refused (503) while its node takes
        no servers: the files are there and nowhere else."""
        if username in self._moving:
            raise SpawnRefused(409, "Your home folder is being moved to another node: start again in a few minutes", why="home-moving")
        home = await self.where(username)
        if home is None:
            return None
        status = next((s for s in statuses if s.id == home.node_id), None)
        if status is None or not status.schedulable:
            why = status.why_not if status else "it left the Swarm"
            raise SpawnRefused(
                503,
                f"Your home folder is on node {home.hostname}, which takes no new servers now ({why})."
                f" Try again later, or ask an admin to move your home to another node"
                f" (gpuhub home move {username} NODE)",
                why="home-node",
            )
        return home

    async def settle(self, username: str, node_id: str, hostname: str) -> Home:
        """The user's home is on ``node_id`` unless it already lives elsewhere (then that one is returned)."""
        return await self._run("settle", username, node_id, hostname)

    async def move(self, username: str, to: str, running: bool, by: str) -> Home:
        """Move ``username``'s home to the node named ``to`` (hostname or id): copied there, then
        recorded; the old node keeps its copy (remove it there when you no longer need it). Refused
        (409) while a server of theirs runs or starts, without a home, or to a node that takes no
        servers; a copy that fails leaves the home where it was (502)."""
        if self.settings.engine.kind != "swarm" or self.settings.engine.homes != "node":
            raise SpawnRefused(409, 'homes move only on a Swarm with homes on the nodes ([engine] kind = "swarm", homes = "node")', why="homes")
        if running or username in self._moving:
            raise SpawnRefused(
                409, f"{username} has a server running (or a move under way): stop it first, so nothing writes the home while it moves", why="running"
            )
        home = await self.where(username)
        if home is None:
            raise SpawnRefused(409, f"{username} has no home on a node yet (their first server makes one): nothing to move", why="no-home")
        statuses = await self.engine.nodes()
        target = next((s for s in statuses if to in (s.hostname, s.id)), None)
        if target is None:
            names = ", ".join(s.hostname for s in statuses) or "none"
            raise SpawnRefused(409, f"to: {to!r} is not a node of this Swarm. Accepted: {names}", why="node")
        if not target.schedulable:
            raise SpawnRefused(409, f"node {target.hostname} takes no servers now ({target.why_not}): pick another", why="node")
        if target.id == home.node_id:
            raise SpawnRefused(409, f"{username}'s home is already on node {target.hostname}", why="same-node")
        sp = self.settings.spawner
        self._moving.add(username)
        try:
            log.info("gpuhub homes: %s moves %s's home from %s to %s", by, username, home.hostname, target.hostname)
            try:
                await self.engine.move_home(
                    home_volume_name(self.settings, username), home.node_id, target.id, helper_image(self.settings), sp.network,
                    f"{sp.uid}:{sp.uid}", sp.home_path,
                )
            except HomeMoveFailed as e:
                log.warning("gpuhub homes: %s's home was not moved (it stays on %s): %s", username, home.hostname, e)
                raise SpawnRefused(502, f"The copy to {target.hostname} failed ({e}); the home stays on {home.hostname}", why="copy") from None
            moved = await self._run("move", username, target.id, target.hostname)
            log.info("gpuhub homes: %s's home is now on %s (the old copy stays on %s)", username, target.hostname, home.hostname)
            return moved
        finally:
            self._moving.discard(username)
