"""Which nodes of a Swarm take new servers, and the GPU pool they make: pure, no Docker, no hub.

Two sources meet here. The Swarm manager says which nodes exist, whether each is ``ready`` (or
``down``, ``disconnected``, ``unknown``) and whether an admin set it ``active``, ``pause`` or
``drain`` (``SwarmNode``, read by the engine). The node reporters say which GPUs each node has, as
NVML (or a SIMULATED file) sees them there (``inventory.report.NodeReport``).

A node takes new servers when it is ready, active, and has reported within ``max_age`` (three
report intervals): ``node_statuses`` says so, or why not, for every node; ``pool`` is the inventory
the allocator places in: the GPUs of those nodes only. The GPUs of a node that is down or drained
stay out of the pool, so nothing new lands there; what is already held on them stays held (the
allocations are the database's) until the node comes back or is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..inventory.activity import Reading, merged
from ..inventory.model import Inventory
from ..inventory.report import NodeReport


@dataclass(frozen=True)
class SwarmNode:
    """A node as the Swarm manager lists it."""

    id: str
    hostname: str
    role: str  # "manager" or "worker"
    state: str  # "ready", "down", "disconnected", "unknown"
    availability: str  # "active", "pause", "drain"
    address: str = ""


@dataclass(frozen=True)
class Received:
    """A node's last report, and when the hub received it."""

    report: NodeReport
    at: datetime


@dataclass(frozen=True)
class NodeStatus:
    """What the admin pages, /metrics and placement know of one node."""

    id: str
    hostname: str
    role: str
    state: str
    availability: str
    schedulable: bool  # new servers may land here
    why_not: str  # "" when schedulable, else why not, in words ("drained by an admin")
    reported: datetime | None
    gpus: int
    mig_slices: int
    source: str  # where its inventory came from ("nvml", "file:...", "" before its first report)
    simulated: bool


LOST_STATES = ("down", "disconnected")


def is_lost(node: SwarmNode | None) -> bool:
    """A node whose servers are to be taken as stopped: down, disconnected, or gone from the Swarm.
    Not ``unknown``: a manager that restarted (or a new leader) lists every node so until the node
    registers again, within seconds, with its servers still running."""
    return node is None or node.state in LOST_STATES


def node_statuses(nodes: list[SwarmNode], received: dict[str, Received], now: datetime, max_age: float) -> list[NodeStatus]:
    """Every node the manager lists, in hostname order, with whether it takes new servers and why not."""
    statuses = []
    for node in sorted(nodes, key=lambda n: (n.hostname, n.id)):
        got = received.get(node.id)
        inventory = got.report.inventory if got else None
        if node.state == "unknown":
            why = "the manager does not know its state yet (it restarted or changed leader; nodes register again within seconds)"
        elif node.state != "ready":
            why = f"the node is {node.state} (its engine does not answer the manager)"
        elif node.availability != "active":
            why = "drained by an admin" if node.availability == "drain" else "paused by an admin"
        elif got is None:
            why = "no report from its node reporter yet"
        elif (age := (now - got.at).total_seconds()) > max_age:
            why = f"no report from its node reporter for {int(age)} s"
        else:
            why = ""
        statuses.append(
            NodeStatus(
                id=node.id,
                hostname=node.hostname,
                role=node.role,
                state=node.state,
                availability=node.availability,
                schedulable=not why,
                why_not=why,
                reported=got.at if got else None,
                gpus=len(inventory.gpus) if inventory else 0,
                mig_slices=len(inventory.slices()) if inventory else 0,
                source=inventory.source if inventory else "",
                simulated=bool(inventory and inventory.simulated),
            )
        )
    return statuses


def pool(statuses: list[NodeStatus], received: dict[str, Received], taking_only: bool = True) -> Inventory:
    """The GPUs of the nodes that take new servers, node by node in hostname order: what the allocator
    places in. SIMULATED when any node's inventory is (the label says so wherever the pool shows).
    ``taking_only=False``: of every node that reported (down, drained too): what the admin sees."""
    taking = [s for s in statuses if (s.schedulable if taking_only else s.id in received)]
    gpus = tuple(g for s in taking for g in received[s.id].report.inventory.gpus)
    simulated = any(s.simulated for s in taking)
    sources = sorted({s.source for s in taking})
    note = "" if taking else "no Swarm node takes servers now (see the Nodes view)"
    return Inventory(gpus=gpus, source=f"swarm: {len(taking)} node(s), {', '.join(sources) or 'no inventory'}", simulated=simulated, note=note)


def held_per_node(held_devices, node_of) -> dict[str, int]:
    """Node id → how many devices are held there, from every live allocation's ``uuids``
    (``held_devices``) and ``node_of`` (a device UUID → its node id, or None on one host)."""
    counts: dict[str, int] = {}
    for uuids in held_devices:
        for device in uuids:
            if (node := node_of(device)) is not None:
                counts[node] = counts.get(node, 0) + 1
    return counts


def node_of_devices(received: dict[str, Received]) -> dict[str, str]:
    """Device UUID (GPU or MIG slice) → the Swarm node id it is in, from every node's last report."""
    found = {}
    for node_id, got in received.items():
        for g in got.report.inventory.gpus:
            found[g.uuid] = node_id
            for s in g.mig:
                found[s.uuid] = node_id
    return found


def node_for_new_home(username: str, statuses: list[NodeStatus]) -> NodeStatus | None:
    """Where a user without a home yet gets one when their first server needs no GPU: one of the
    nodes taking servers (workers before managers), the same one for the same user while the nodes
    stay the same, spread evenly over users."""
    import hashlib

    taking = [s for s in statuses if s.schedulable]
    workers = [s for s in taking if s.role == "worker"] or taking
    if not workers:
        return None
    digest = int(hashlib.sha256(username.encode()).hexdigest()[:8], 16)
    return workers[digest % len(workers)]


def node_activity(received: dict[str, Received], now: datetime, max_age: float) -> Reading:
    """Every node's device activity reported within ``max_age`` seconds, as one reading. A node that
    sent none lately leaves its devices out: the reclaim counts them busy (never stops on a guess)."""
    fresh = [got for got in received.values() if got.report.activity is not None and (now - got.at).total_seconds() <= max_age]
    names = ", ".join(sorted(got.report.hostname for got in fresh)) or "none"
    return merged([got.report.activity for got in fresh], f"swarm: node reporters ({names})")
