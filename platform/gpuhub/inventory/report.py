"""What a node reporter sends the hub (``NodeReport``) and its JSON form, both ways.

On an engine of several hosts (Swarm) every GPU node runs ``gpuhub.reporter``: it reads the node's
inventory (NVML, or a SIMULATED file) and the memory in use on each device, and POSTs a report to
``/hub/api/gpuhub/v1/nodes/<node id>/report``. ``report_json`` is what it sends; ``parse_report``
is the hub's check of what it receives: a payload it cannot use is a ``ReportError`` naming the field
and what is accepted (a 400; nothing is recorded).

    {"node": {"id": "vx1…", "hostname": "gpu-3"},
     "inventory": {"source": "nvml", "simulated": false, "note": "",
                   "gpus": [{"index": 0, "uuid": "GPU-…", "name": "NVIDIA H100 80GB HBM3",
                             "memory_bytes": 85899345920, "compute_capability": [9, 0],
                             "healthy": true, "health_reason": "", "nvlink_peers": ["GPU-…"],
                             "mig": [{"uuid": "MIG-…", "profile": "1g.10gb", "memory_bytes": 10737418240}]}]},
     "memory_used": {"GPU-…": [1073741824, 85899345920]},
     "activity": {"simulated": false, "devices": {"GPU-…": {"utilisation": 0, "memory": {}}}}}

``activity`` (optional: absent when the node's reading failed) is how busy each device is, for the
GPU-idle reclaim (``inventory.activity``); a reporter maps no processes to servers, so its ``memory``
maps are empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .activity import ActivityError, Reading, devices_from_json, devices_json
from .model import Gpu, Inventory, MigSlice

NODE_ID = re.compile(r"^[a-z0-9]{1,64}$")  # Swarm node ids: 25 lowercase letters and digits
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
MAX_GPUS = 64  # per node: more than any machine holds


class ReportError(ValueError):
    """A report the hub cannot use: ``field`` is the key to blame (``"inventory.gpus[2].uuid"``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class NodeReport:
    node_id: str
    hostname: str
    inventory: Inventory  # its GPUs carry ``node = hostname``
    memory_used: dict[str, tuple[int, int]] = field(default_factory=dict)  # UUID → (used, total) bytes
    activity: Reading | None = None  # how busy its devices are (None: no reading this time)


def report_json(report: NodeReport) -> dict:
    inv = report.inventory
    return {
        "node": {"id": report.node_id, "hostname": report.hostname},
        "inventory": {
            "source": inv.source,
            "simulated": inv.simulated,
            "note": inv.note,
            "gpus": [
                {
                    "index": g.index,
                    "uuid": g.uuid,
                    "name": g.name,
                    "memory_bytes": g.memory_bytes,
                    "compute_capability": list(g.compute_capability),
                    "healthy": g.healthy,
                    "health_reason": g.health_reason,
                    "nvlink_peers": sorted(g.nvlink_peers),
                    "mig": [{"uuid": s.uuid, "profile": s.profile, "memory_bytes": s.memory_bytes} for s in g.mig],
                }
                for g in inv.gpus
            ],
        },
        "memory_used": {uuid: list(pair) for uuid, pair in report.memory_used.items()},
        **({"activity": {"simulated": report.activity.simulated, "devices": devices_json(report.activity.devices)}} if report.activity else {}),
    }


def _get(data: dict, key: str, kind, where: str, accepted: str):
    if not isinstance(data, dict) or key not in data:
        raise ReportError(f"{where}{key}", f"missing. Accepted: {accepted}")
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ReportError(f"{where}{key}", f"{value!r} is not accepted. Accepted: {accepted}")
    return value


def _size(data: dict, key: str, where: str) -> int:
    value = _get(data, key, int, where, "a number of bytes above 0")
    if value <= 0:
        raise ReportError(f"{where}{key}", f"{value} is not accepted. Accepted: a number of bytes above 0")
    return value


def _gpu(entry, i: int, hostname: str) -> Gpu:
    where = f"inventory.gpus[{i}]."
    uuid = _get(entry, "uuid", str, where, "a GPU-... UUID")
    if not uuid.startswith("GPU-"):
        raise ReportError(f"{where}uuid", f"{uuid!r} is not accepted. Accepted: a GPU-... UUID")
    capability = _get(entry, "compute_capability", list, where, "[major, minor], e.g. [9, 0]")
    if len(capability) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in capability):
        raise ReportError(f"{where}compute_capability", f"{capability!r} is not accepted. Accepted: [major, minor], e.g. [9, 0]")
    peers = _get(entry, "nvlink_peers", list, where, "a list of GPU UUIDs")
    if not all(isinstance(p, str) for p in peers):
        raise ReportError(f"{where}nvlink_peers", "Accepted: a list of GPU UUIDs")
    slices = []
    for j, mig in enumerate(_get(entry, "mig", list, where, "a list of MIG slices")):
        at = f"{where}mig[{j}]."
        mig_uuid = _get(mig, "uuid", str, at, "a MIG-... UUID")
        if not mig_uuid.startswith("MIG-"):
            raise ReportError(f"{at}uuid", f"{mig_uuid!r} is not accepted. Accepted: a MIG-... UUID")
        slices.append(MigSlice(mig_uuid, _get(mig, "profile", str, at, 'a MIG profile, e.g. "1g.10gb"'), _size(mig, "memory_bytes", at)))
    return Gpu(
        index=_get(entry, "index", int, where, "the GPU's index on its node (0, 1, ...)"),
        uuid=uuid,
        name=_get(entry, "name", str, where, "the GPU's model name"),
        memory_bytes=_size(entry, "memory_bytes", where),
        compute_capability=(capability[0], capability[1]),
        healthy=_get(entry, "healthy", bool, where, "true or false"),
        health_reason=_get(entry, "health_reason", str, where, "text"),
        nvlink_peers=frozenset(peers),
        mig=tuple(slices),
        node=hostname,
    )


def parse_report(data, node_id: str) -> NodeReport:
    """The hub's check of a report POSTed for ``node_id`` (the URL's); ReportError names what is wrong."""
    if not isinstance(data, dict):
        raise ReportError("body", "not a JSON object. Accepted: a node report (docs/scale-out.md)")
    node = _get(data, "node", dict, "", "{\"id\": ..., \"hostname\": ...}")
    reported_id = _get(node, "id", str, "node.", "the Swarm node id")
    if reported_id != node_id or not NODE_ID.match(node_id):
        raise ReportError("node.id", f"{reported_id!r} is not accepted. Accepted: the Swarm node id in the URL ({node_id!r})")
    hostname = _get(node, "hostname", str, "node.", "the node's hostname")
    if not HOSTNAME.match(hostname):
        raise ReportError("node.hostname", f"{hostname!r} is not accepted. Accepted: a hostname")
    inv = _get(data, "inventory", dict, "", "the node's inventory")
    entries = _get(inv, "gpus", list, "inventory.", "a list of GPUs")
    if len(entries) > MAX_GPUS:
        raise ReportError("inventory.gpus", f"{len(entries)} GPUs is not accepted. Accepted: at most {MAX_GPUS}")
    gpus = tuple(_gpu(e, i, hostname) for i, e in enumerate(entries))
    uuids = [g.uuid for g in gpus] + [s.uuid for g in gpus for s in g.mig]
    if len(set(uuids)) != len(uuids):
        raise ReportError("inventory.gpus", "a UUID appears twice. Accepted: every GPU and MIG slice with its own UUID")
    inventory = Inventory(
        gpus=gpus,
        source=_get(inv, "source", str, "inventory.", '"nvml", "none" or "file:<path>"'),
        simulated=_get(inv, "simulated", bool, "inventory.", "true or false"),
        note=_get(inv, "note", str, "inventory.", "text") if "note" in inv else "",
    )
    used = {}
    for uuid, pair in (_get(data, "memory_used", dict, "", "{UUID: [used, total]}") if "memory_used" in data else {}).items():
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in pair)
        if uuid not in uuids or not ok:
            raise ReportError(f"memory_used.{uuid}", "Accepted: [used, total] bytes of a device in this report")
        used[uuid] = (pair[0], pair[1])
    return NodeReport(node_id, hostname, inventory, used, _activity(data, set(uuids), hostname))


def _activity(data: dict, uuids: set[str], hostname: str) -> Reading | None:
    if "activity" not in data:
        return None
    activity = _get(data, "activity", dict, "", '{"simulated": ..., "devices": {...}}')
    simulated = _get(activity, "simulated", bool, "activity.", "true or false")
    try:
        devices = devices_from_json(activity.get("devices"))
    except ActivityError as e:
        raise ReportError(f"activity.{e.field}", str(e)) from None
    stray = sorted(set(devices) - uuids)
    if stray:
        raise ReportError(f"activity.devices.{stray[0]}", "not a device of this report. Accepted: the report's GPU and MIG UUIDs")
    return Reading(devices, simulated, f"node {hostname}")
