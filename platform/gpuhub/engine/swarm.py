"""Many GPU hosts: a Docker Swarm whose manager the hub runs on (``SwarmEngine``).

- **Devices**: each GPU node runs gpuhub's node reporter (``gpuhub.reporter``, a global Swarm
  service the hub deploys: ``reporter_service``), which reads the node's NVML (or a SIMULATED file)
  and POSTs a ``NodeReport`` to the hub (``node_report``). The manager's node list (polled every
  ``[engine] report_interval``) says which nodes are ready and active; ``policy.nodes`` merges the
  two into the pool: the GPUs of the nodes that take new servers.
- **Wiring**: a server is a Swarm service pinned to the node of its devices (``node.id`` constraint,
  ``placement``). Swarm services cannot carry Docker device requests, so the devices are exposed by
  UUID through ``NVIDIA_VISIBLE_DEVICES`` to the nodes' default runtime, the NVIDIA runtime
  (``"default-runtime": "nvidia"`` in each GPU node's daemon.json; docs/scale-out.md), or, in the
  ``env-only`` exposure (CI, demos), only the variables, labelled as such.
- **Finding servers again**: services labelled ``org.gpuhub.allocation``; a server on a node that is
  down counts as running until the node comes back or is removed (its devices stay held).
- Docker calls go to the manager's API through the same one async wrapper as on one host
  (``DockerEngine.call``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

from .. import contract as c
from ..config.schema import Settings
from ..contract import utcnow
from ..inventory.activity import Reading
from ..inventory.model import Inventory
from ..inventory.report import NodeReport
from ..policy.containers import DeviceWiring, GpuAssignment
from ..policy.errors import SpawnRefused
from ..policy.services import IMAGE_PYTHON, NetguardSpec, ReporterSpec, netguard_spec
from ..policy.nodes import NodeStatus, Received, SwarmNode, is_lost, node_activity, node_of_devices, node_statuses, pool
from .base import RunningServer
from .base import ExecUnavailable
from .docker import DockerEngine, docker_client, docker_wiring

log = logging.getLogger("JupyterHub")
REPORTS_KEPT_FOR = 3  # report intervals: a node silent for longer gets no new servers
RUNNING_TASK_STATES = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}


# The single-user image's health check asks its Jupyter server, which the node reporter and a home copy
# do not run: their tasks turn it off (unhealthy, Swarm would kill them, and while "starting" their
# service names do not resolve).
NO_HEALTH_CHECK = ["NONE"]


class HomeMoveFailed(RuntimeError):
    """A home's copy to another node did not complete; the home stays where it was."""


def swarm_exposure(exposure: str) -> str:
    """``[gpus] exposure`` on a Swarm: "device_requests" (the NVIDIA runtime) becomes the nodes'
    default runtime reading ``NVIDIA_VISIBLE_DEVICES``; "env-only" stays itself."""
    return "default-runtime" if exposure == "device_requests" else exposure


def swarm_node(node: dict) -> SwarmNode:
    """A node object of the manager's API → ``SwarmNode``."""
    spec, status, description = node.get("Spec") or {}, node.get("Status") or {}, node.get("Description") or {}
    return SwarmNode(
        id=node.get("ID", ""),
        hostname=description.get("Hostname", ""),
        role=spec.get("Role", "worker"),
        state=status.get("State", "unknown"),
        availability=spec.get("Availability", "active"),
        address=status.get("Addr", ""),
    )


class SwarmEngine(DockerEngine):
    name = "swarm"
    runs_jobs = False  # batch jobs and a container's state: one host's (a server here is a service; its task says)

    def __init__(self, settings: Settings, client_factory: Callable = docker_client, clock: Callable = utcnow):
        super().__init__(settings.gpus, read_inventory=lambda: Inventory((), "none", False), client_factory=client_factory)
        self.exposure = swarm_exposure(settings.gpus.exposure)
        self.interval = settings.engine.report_interval
        self._clock = clock
        self._nodes: list[SwarmNode] = []
        self._nodes_read_at = 0.0
        self._received: dict[str, Received] = {}
        self._device_nodes: dict[str, str] = {}  # device UUID → node id, from the reports (``node_of``)
        self._settled = False
        self._settling = asyncio.Lock()
        self._capacity_changed: Callable[[], None] = lambda: None
        self._node_back: Callable[[str], Awaitable[None]] | None = None
        self._netguard: tuple[str, str, str] | None = None  # (network, node socket, image): ``keep_netguards``
        self._netguard_deployed: NetguardSpec | None = None
        self._netguard_missing = ""  # why netguard cannot be deployed now, as last logged
        self._hub_place: tuple[tuple[str, ...], str] | None = None  # the hub container's addresses and node: fixed while it runs

    def listen(self, capacity_changed: Callable[[], None], node_back: Callable[[str], Awaitable[None]]) -> None:
        self._capacity_changed, self._node_back = capacity_changed, node_back

    # --- nodes -----------------------------------------------------------------------------------------
    def node_report(self, report: NodeReport) -> None:
        """A node reporter's report (``web``'s handler checked its shape)."""
        before = self._received.get(report.node_id)
        self._received[report.node_id] = Received(report, self._clock())
        if before is None or before.report.inventory.gpus != report.inventory.gpus:
            self._device_nodes = node_of_devices(self._received)
            log.info(
                "gpuhub swarm: node %s (%s) reports %d GPU(s), %d MIG slice(s) from %s%s",
                report.hostname, report.node_id[:10], len(report.inventory.gpus), len(report.inventory.slices()),
                report.inventory.source, " (SIMULATED)" if report.inventory.simulated else "",
            )
            self._capacity_changed()

    async def read_nodes(self) -> list[SwarmNode]:
        """The manager's node list, read again when older than half a report interval."""
        if time.monotonic() - self._nodes_read_at > self.interval / 2:
            self._nodes = [swarm_node(n) for n in await self.call("nodes")]
            self._nodes_read_at = time.monotonic()
        return self._nodes

    async def nodes(self) -> list[NodeStatus]:
        return node_statuses(await self.read_nodes(), self._received, self._clock(), self.interval * REPORTS_KEPT_FOR)

    async def inventory(self) -> Inventory:
        return pool(await self.nodes(), self._received)

    async def known_inventory(self) -> Inventory:
        return pool(await self.nodes(), self._received, taking_only=False)

    async def settle(self) -> None:
        """After hub start: wait (once, at most three report intervals) until every ready, active node
        has reported, so that the first starts do not find the pool short of the nodes not heard yet."""
        async with self._settling:  # starts arriving meanwhile wait for the same settling
            if self._settled:
                return
            deadline = time.monotonic() + self.interval * REPORTS_KEPT_FOR
            while time.monotonic() < deadline:
                statuses = await self.nodes()
                if all(s.reported is not None for s in statuses if s.state == "ready" and s.availability == "active"):
                    break
                self._nodes_read_at = 0.0
                await asyncio.sleep(1)
            else:
                log.warning("gpuhub swarm: not every node reported within %d s: %s", self.interval * REPORTS_KEPT_FOR,
                            ", ".join(s.hostname for s in await self.nodes() if s.reported is None) or "-")
            self._settled = True

    def activity(self) -> Reading:
        """How busy every node's devices are, from the fresh reports (the agent's GPU-idle reclaim)."""
        return node_activity(self._received, self._clock(), self.interval * REPORTS_KEPT_FOR)

    async def memory_used(self) -> dict[str, tuple[int, int]] | None:
        used = {}
        for got in self._received.values():
            if got.report.inventory.source == "nvml":
                used.update(got.report.memory_used)
        return used or None

    @property
    def simulated(self) -> bool:
        return any(got.report.inventory.simulated for got in self._received.values())

    def node_of(self, uuid: str) -> str | None:
        """The Swarm node id a device is in (from the reports), or None."""
        return self._device_nodes.get(uuid)

    def hostname_of(self, node_id: str) -> str:
        got = self._received.get(node_id)
        return got.report.hostname if got else next((n.hostname for n in self._nodes if n.id == node_id), node_id[:10])

    async def node_is_lost(self, node_id: str) -> bool:
        return is_lost(next((n for n in await self.read_nodes() if n.id == node_id), None))

    async def run(self) -> None:
        """Poll the manager's node list every report interval: wake the lines when a node starts to take
        servers; say when a node is back or gone (what was held for its lost servers is handed back)."""
        taking: set[str] = set()
        listed: set[str] = set()
        while True:
            try:
                self._nodes_read_at = 0.0
                statuses = await self.nodes()
                now_taking = {s.id for s in statuses if s.schedulable}
                now_listed = {s.id for s in statuses}
                for s in statuses:
                    if s.schedulable != (s.id in taking):
                        log.info("gpuhub swarm: node %s %s", s.hostname, "takes servers" if s.schedulable else f"takes no new servers: {s.why_not}")
                for node in listed - now_listed:
                    log.warning("gpuhub swarm: node %s left the Swarm", self.hostname_of(node))
                    self._received.pop(node, None)
                    self._device_nodes = node_of_devices(self._received)
                if now_taking - taking:
                    self._capacity_changed()
                if self._node_back is not None:
                    for node in (now_taking - taking) | (listed - now_listed):
                        await self._node_back(node)
                taking, listed = now_taking, now_listed
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gpuhub swarm: reading the manager's node list failed; trying again in %d s", self.interval)
            try:
                await self._ensure_netguards()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gpuhub swarm: gpuhub-netguard could not be deployed or updated; trying again in %d s", self.interval)
            await asyncio.sleep(self.interval)

    async def deploy_reporters(self, spec: ReporterSpec, token: str) -> None:
        """Create, or update when its spec changed, the node reporters' global service; its token goes
        to the nodes as a Swarm secret (named by the token's hash: a new token makes a new secret)."""
        from docker.types import ContainerSpec, Healthcheck, Mount, SecretReference, TaskTemplate

        secret_name = f"gpuhub-reporter-token-{hashlib.sha256(token.encode()).hexdigest()[:12]}"
        found = await self.call("secrets", filters={"name": secret_name})
        secret_id = next((x["ID"] for x in found if x["Spec"]["Name"] == secret_name), None)
        if secret_id is None:
            secret_id = (await self.call("create_secret", secret_name, token.encode(), labels=spec.labels))["ID"]
        container = ContainerSpec(
            spec.image,
            command=list(spec.command),
            env=spec.env,
            user=spec.user,
            mounts=[Mount(m.target, m.source, type=m.type, read_only=m.read_only) for m in spec.mounts],
            secrets=[SecretReference(secret_id, secret_name, filename=spec.secret_target, uid=spec.user.split(":")[0], mode=0o400)],
            cap_drop=["ALL"],
            labels=spec.labels,
            healthcheck=Healthcheck(test=NO_HEALTH_CHECK),
        )
        await self._global_service(spec.name, TaskTemplate(container, networks=[spec.network]), spec.labels, "node reporters")

    def keep_netguards(self, network: str, node_socket: str, image: str) -> None:
        """Keep gpuhub-netguard on every node but the hub's own (``[network] isolation``): at every node
        poll (``run``) the service is made to match the hub container's addresses on ``network`` and the
        nodes' addresses, and deployed or updated when they changed, or after a failed try."""
        self._netguard = (network, node_socket, image)

    async def _ensure_netguards(self) -> None:
        if self._netguard is None:
            return
        network, node_socket, image = self._netguard
        if self._hub_place is None:  # read until found, then kept: this process's container keeps its address and node
            hubs = await self.call("containers", filters={"label": f"{c.HUB_ROLE_LABEL}=hub"})
            hub_addresses = tuple(sorted(filter(None, (
                ((h.get("NetworkSettings") or {}).get("Networks") or {}).get(network, {}).get("IPAddress", "")
                for h in hubs if c.NETWORK_LABEL not in (h.get("Labels") or {})
            ))))
            if not hub_addresses:
                why = f"no hub container (label {c.HUB_ROLE_LABEL}=hub) is on the network {network} of this engine"
                if why != self._netguard_missing:
                    log.error("gpuhub swarm: gpuhub-netguard NOT deployed or updated: %s, so the nodes cannot know the hub's"
                              " address: new servers on the other nodes will not start", why)
                self._netguard_missing = why
                return
            self._hub_place = (hub_addresses, (await self.call("info")).get("Swarm", {}).get("NodeID", ""))
        hub_addresses, hub_node = self._hub_place
        node_addresses = tuple(sorted({n.address for n in self._nodes if n.address and n.address != "0.0.0.0"}))
        spec = netguard_spec(image, hub_addresses, node_socket, hub_node, node_addresses)
        if spec != self._netguard_deployed:
            await self._deploy_netguards(spec)
            self._netguard_deployed = spec

    async def _deploy_netguards(self, spec: NetguardSpec) -> None:
        from docker.types import ContainerSpec, Healthcheck, Mount, Placement, TaskTemplate

        container = ContainerSpec(
            spec.image,
            command=list(spec.command),
            user="0:0",
            mounts=[Mount(m.target, m.source, type=m.type, read_only=m.read_only) for m in spec.mounts],
            cap_drop=["ALL"],
            cap_add=list(spec.cap_add),
            labels=spec.labels,
            healthcheck=Healthcheck(test=NO_HEALTH_CHECK),
        )
        template = TaskTemplate(container, networks=["host"], placement=Placement(constraints=list(spec.constraints)))
        await self._global_service(spec.name, template, spec.labels, f"gpuhub-netguard (the hub at {', '.join(spec.hub_addresses)})")

    async def _global_service(self, name: str, template, labels: dict, what: str) -> None:
        """Create the global service ``name``, or update it to ``template`` (Swarm replaces its tasks only
        when the spec changed)."""
        from docker.types import EndpointSpec, ServiceMode, UpdateConfig

        kwargs = dict(
            task_template=template, name=name, labels=labels, mode=ServiceMode("global"), endpoint_spec=EndpointSpec(mode="dnsrr"),
            # every node at once, and a node whose new task fails does not hold the others back on the old spec
            update_config=UpdateConfig(parallelism=0, failure_action="continue"),
        )
        existing = [x for x in await self.call("services", filters={"name": name}) if x["Spec"]["Name"] == name]
        if existing:
            service = existing[0]
            await self.call("update_service", service["ID"], service["Version"]["Index"], **kwargs)
            log.info("gpuhub swarm: %s (%s) updated: %s", what, name, template["ContainerSpec"]["Image"])
        else:
            await self.call("create_service", **kwargs)
            log.info("gpuhub swarm: %s (%s) deployed on every node: %s", what, name, template["ContainerSpec"]["Image"])

    async def move_home(self, volume: str, source: str, target: str, image: str, network: str, user: str, path: str) -> None:
        """Copy the home volume ``volume`` from node ``source`` to node ``target``: two one-shot tasks of
        ``gpuhub.homecopy`` on the overlay (a sender on the old node, a receiver on the new one, both
        mounting the volume at ``path`` as ``user``). Raises HomeMoveFailed with the tasks' words when
        either does not complete; the old copy stays on the old node either way."""
        from docker.types import ContainerSpec, EndpointSpec, Healthcheck, Mount, Placement, RestartPolicy, TaskTemplate

        tag = hashlib.sha256(f"{volume}{time.time()}".encode()).hexdigest()[:8]
        receiver, sender = f"gpuhub-home-in-{tag}", f"gpuhub-home-out-{tag}"

        def task(node, command, read_only):
            container = ContainerSpec(
                image, command=[IMAGE_PYTHON, "-m", "gpuhub.homecopy", *command], user=user, cap_drop=["ALL"],
                mounts=[Mount(path, volume, type="volume", read_only=read_only)], labels={"org.gpuhub.role": "home-move"},
                healthcheck=Healthcheck(test=NO_HEALTH_CHECK),
            )
            return TaskTemplate(
                container, restart_policy=RestartPolicy(condition="none"), placement=Placement(constraints=[f"node.id=={node}"]),
                networks=[network],
            )

        made = []
        try:
            for name, node, command, read_only in (
                (receiver, target, ["receive", "--dir", path, "--port", "7077"], False),
                (sender, source, ["send", "--dir", path, "--to", f"{receiver}:7077"], True),
            ):
                await self.call("create_service", task(node, command, read_only), name=name, endpoint_spec=EndpointSpec(mode="dnsrr"),
                                labels={"org.gpuhub.role": "home-move"})
                made.append(name)
            deadline = time.monotonic() + 600
            while True:
                states = {name: await self._last_task(name) for name in made}
                if all(t.get("Status", {}).get("State") == "complete" for t in states.values()):
                    return
                failed = {n: t["Status"] for n, t in states.items() if t.get("Status", {}).get("State") in ("failed", "rejected", "shutdown")}
                if failed or time.monotonic() > deadline:
                    words = "; ".join(f"{'receiver' if n == receiver else 'sender'}: {st.get('Err') or st.get('State')}" for n, st in failed.items())
                    raise HomeMoveFailed(words or "the copy did not finish within 10 minutes")
                await asyncio.sleep(1)
        finally:
            for name in made:
                try:
                    await self.call("remove_service", name)
                except Exception:
                    log.warning("gpuhub swarm: home move service %s was not removed", name)

    async def _last_task(self, service: str) -> dict:
        tasks = await self.call("tasks", filters={"service": service})
        return max(tasks, key=lambda t: t.get("CreatedAt", "")) if tasks else {}

    # --- servers ---------------------------------------------------------------------------------------
    def wiring(self, gpu: GpuAssignment | None) -> DeviceWiring:
        return docker_wiring(gpu, self.exposure, self.simulated)

    async def server_container(self, username: str, server_name: str) -> str | None:
        raise ExecUnavailable("SSH into servers on a Swarm is not available yet: a server's container runs on its node's engine")

    def placement(self, gpu: GpuAssignment | None) -> str | None:
        """The node id a server with ``gpu`` must run on (None: any node the site allows)."""
        if gpu is None or not gpu.uuids:
            return None
        return self.node_of(gpu.uuids[0])

    async def has_image(self, image: str) -> bool:
        """Whether the registry has ``image`` (the manager asks it; the nodes pull it at start). A
        registry that does not answer refuses the start (503) before anything is allocated."""
        from docker.errors import APIError, NotFound

        try:
            await self.call("inspect_distribution", image)
            return True
        except NotFound:
            return False
        except APIError as e:
            text = str(e.explanation or e)
            if "manifest unknown" in text or "not found" in text.lower():
                return False
            raise SpawnRefused(
                503,
                f"The image registry did not answer for {image!r} ({text[:200]}), so no node could pull it."
                " Nothing was started; try again in a minute, and tell an admin if it persists",
                why="registry",
            ) from None

    async def prepare_home(self, path: str, uid: int) -> None:
        """A user's folder on shared storage (``[engine] homes = "shared"``), made before the first
        server mounts it: owned by the image's user, not world-readable."""
        import os

        def make():
            os.makedirs(path, mode=0o750, exist_ok=True)
            os.chown(path, uid, uid)

        await self._nvml.run(make)

    async def running_servers(self) -> list[RunningServer]:
        found = []
        down = {n.id for n in await self.read_nodes() if n.state != "ready"}
        for service in await self.call("services", filters={"label": c.ALLOCATION_LABEL}):
            allocation = self.allocation_of(service)
            if allocation is None:
                continue
            name = (service.get("Spec") or {}).get("Name", "?")
            tasks = await self.call("tasks", filters={"service": service["ID"], "desired-state": "running"})
            running = any(((t.get("Status") or {}).get("State") in RUNNING_TASK_STATES) or t.get("NodeID") in down for t in tasks)
            found.append(RunningServer(allocation, name, running))
        return found

    def allocation_of(self, server_object: dict) -> int | None:
        return c.allocation_of((server_object.get("Spec") or {}).get("Labels"))
