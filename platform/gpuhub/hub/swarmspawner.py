"""GPUSwarmSpawner: ``GPUSpawner`` on a Docker Swarm (``[engine] kind = "swarm"``). The same profiles,
quotas, lines, sessions and allocations; each server is a Swarm service (DockerSpawner's
``SwarmSpawner``) built by ``policy.services`` from the same container spec as on one host, pinned
to the node of its GPUs.

What differs from one host, here and nowhere else:
- the image is checked in the registry (the nodes pull it), whatever ``pull_policy`` says; the
  manager need not have a copy to read the image's command from, so the server runs
  ``jupyterhub-singleuser`` (as KubeSpawner does, for the same reason; a site sets
  ``c.GPUSwarmSpawner.cmd`` for another);
- a task the node refused (an image it could not pull, a mount it lacks) ends the start at once with
  the node's own words, instead of SwarmSpawner waiting for ever;
- a server whose node went down is seen stopped at the next poll, but its devices stay held until
  the node comes back (its engine then removes the container) or leaves the Swarm.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from dockerspawner import SwarmSpawner
from traitlets import default

from ..policy import containers
from ..policy.decide import Start
from ..policy.errors import SpawnRefused
from ..policy.network import policy_for
from ..policy.nodes import node_for_new_home
from ..policy.services import service_parts, task_address
from .spawner import GPUSpawner

ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
# A task's container runs from "starting" on: Swarm says "running" only once the image's health check
# passed (its first check comes an interval after the start: 20 s of every start, measured), while
# JupyterHub checks the server itself.
RUNNING = {"starting", "running"}


class ServiceDidNotStart(RuntimeError):
    """The node refused or ended the server's task; the message is the node's own reason."""


class GPUSwarmSpawner(GPUSpawner, SwarmSpawner):
    """``GPUSpawner`` whose servers are Swarm services (registered as ``gpuhub-swarm``;
    ``gpuhub.hub.hubconfig`` picks it for ``[engine] kind = "swarm"``)."""

    _mounts: list = []
    _home = None  # the user's home (``db.records.Home``) with homes on the nodes; None: none yet, or shared
    _shared_dirs: tuple = ()  # with shared homes: the folders there the server binds (its home, a course folder)
    _lost_node = ""  # the node this server was on, when the poll found it down

    @default("pull_policy")
    def _default_pull_policy(self):
        return "skip"  # the nodes pull from the registry; the manager needs no copy

    @default("cmd")
    def _default_cmd(self):
        # DockerSpawner reads the image's command from the engine the hub talks to: the manager's,
        # which has the image only once its own node reporter pulled it, if ever (a fresh hub's
        # first start failed there with "No such image")
        return ["jupyterhub-singleuser"]

    @property
    def mounts(self):
        return self._mounts

    def _must_have_image(self) -> bool:
        return True  # the registry must have it, or every node's pull fails

    async def bind_start(self, start: Start) -> Start:
        """With homes on the nodes: a user with a home starts only on its node (refused while that node
        takes no servers)."""
        self._home = None
        if self.settings.engine.homes != "node":
            return start
        self._home = await self.services.homes.for_start(self.user.name, await self.services.engine.nodes())
        return replace(start, node=self._home.hostname) if self._home else start

    async def use_spec(self, spec: containers.ContainerSpec, assignment) -> None:
        from docker.types import Mount, RestartPolicy

        engine, homes = self.services.engine, self.settings.engine
        node = engine.placement(assignment) or await self._home_node()
        shared = homes.shared_homes if homes.homes == "shared" else ""
        parts = service_parts(spec, node, shared)
        await super().use_spec(spec, assignment)  # the caps and the environment, as on one host
        self.volumes = {}  # a service's mounts are ``mounts``, below
        self.extra_host_config = {}  # (a service has no host config: what it carries is in ``parts``)
        self._mounts = [
            Mount(m.target, m.source or None, type=m.type, read_only=m.read_only, tmpfs_size=m.tmpfs_size) for m in parts.mounts
        ]
        self.extra_container_spec = parts.container
        self.extra_placement_spec = {"constraints": list(parts.constraints)}
        # the task's resources whole (SwarmSpawner's own, from mem_limit and cpu_limit, lack the pids limit)
        self.extra_task_spec = {"restart_policy": RestartPolicy(condition=parts.restart_condition), "resources": parts.resources}
        self.extra_endpoint_spec = {"mode": parts.endpoint_mode}
        self.extra_create_kwargs = {"labels": parts.labels}
        self._shared_dirs = parts.shared_folders
        if homes.homes == "node" and self._home is None and node:
            await self._settle_home(node)

    async def _home_node(self) -> str | None:
        """A server without GPUs: on its home's node; with homes on the nodes and no home yet, on the
        node chosen for the new home; with shared homes, anywhere."""
        if self.settings.engine.homes != "node":
            return None
        if self._home is not None:
            return self._home.node_id
        chosen = node_for_new_home(self.user.name, await self.services.engine.nodes())
        if chosen is None:
            raise SpawnRefused(503, "No Swarm node takes new servers now. Try again later, and tell an admin", why="no-node")
        return chosen.id

    async def _settle_home(self, node: str) -> None:
        """The user's first server makes its node their home; if another start of theirs settled it
        elsewhere first, this one stops (its GPUs go back) rather than split the home in two."""
        engine = self.services.engine
        home = await self.services.homes.settle(self.user.name, node, engine.hostname_of(node))
        if home.node_id != node:
            raise SpawnRefused(
                409,
                f"Your other server has just made node {home.hostname} your home; start this one again and it goes there too",
                why="home-node",
            )
        self._home = home
        self.log.info("gpuhub %s: home settled on node %s", self._log_name, home.hostname)

    async def create_object(self):
        for folder in self._shared_dirs:
            await self.services.engine.prepare_home(folder, self.settings.spawner.uid)
        return await super().create_object()

    async def start_object(self):
        """Wait until the task runs; a task the node refused or ended fails the start with its reason."""
        delay = 0.5
        while True:
            task = await self.get_task()
            if not task:
                raise ServiceDidNotStart(f"Swarm service {self.service_name} has no task")
            status = task.get("Status") or {}
            state = status.get("State", "")
            if state in RUNNING:
                return
            if state in ENDED:
                why = status.get("Err") or status.get("Message") or state
                raise SpawnRefused(
                    503,
                    f"The node chosen for your server could not start it: {why}. Nothing was kept; try again,"
                    " and tell an admin if it happens again",
                    why="node-refused",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5)

    async def _stopped_while_starting(self) -> str | None:
        """Why the starting server's task can no longer answer (it ended: the node's words), or None
        while it runs. With ``[network] isolation``, a task that exits 75 was never given its network
        rules (gpuhub-start's refusal). A manager that does not answer now says nothing: asked again."""
        try:
            task = await self.get_task()
        except Exception as e:  # the readiness polls go on; the next ask may get an answer
            self.log.warning("gpuhub %s: the server's task could not be read (%s); asking again", self._log_name, e)
            return None
        status = (task or {}).get("Status") or {}
        if task and status.get("State") not in ENDED:
            return None
        why = status.get("Err") or status.get("Message") or status.get("State") or "its task is gone"
        if "exit (75)" in why and policy_for(self.settings) is not None:
            why += (f": its network rules were not in place (gpuhub-netguard refused them, or did not write them within"
                    f" {self.settings.network.rules_wait} s): is gpuhub-netguard running on that node? `docker service logs"
                    f" gpuhub-netguard` says which (docs/scale-out.md)")
        self.log.warning("gpuhub %s: the server's task ended while starting: %s", self._log_name, why)
        return why

    async def get_ip_and_port(self):
        """The server's task address on the overlay (``policy.services.task_address``), not its
        service name as SwarmSpawner has it; the name where the task has no address yet."""
        address = task_address(await self.get_task(), self.network_name)
        return (address, self.port) if address else await super().get_ip_and_port()

    async def server_status(self):
        """None while the service's latest task runs; else why not. A task on a node that is down means
        the node is lost (its devices stay held, ``_release``); a task that is pending, ended or
        rejected means the server is gone (a drained node's tasks are shut down, and the pinned
        service cannot move)."""
        if await self.get_object() is None:
            return 0
        tasks = await self.docker("tasks", filters={"service": self.service_name})
        if not tasks:
            return 0
        engine = self.services.engine
        for node in {t["NodeID"] for t in tasks if t.get("NodeID")}:
            if await engine.node_is_lost(node):
                self._lost_node = node
                return f"its node {engine.hostname_of(node)} is down"
        latest = max(tasks, key=lambda t: t.get("CreatedAt", ""))
        status = latest.get("Status") or {}
        if status.get("State") in RUNNING:
            return None
        return f"its Swarm task is {status.get('State', 'gone')}: {status.get('Err') or status.get('Message') or ''}".rstrip(": ")

    async def _release(self, allocation_id: int, reason: str) -> None:
        if allocation_id and self._lost_node:
            if allocation_id == self.allocation_id:
                self.allocation_id = 0
            self.services.allocation.hold_for_lost_node(allocation_id, self._lost_node, self._log_name)
            self._lost_node = ""
            return
        await super()._release(allocation_id, reason)
