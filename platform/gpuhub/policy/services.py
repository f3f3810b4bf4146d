"""A user's server as a Swarm service: pure builders from the same ``containers.ContainerSpec`` one
host uses, so the limits and security defaults are one piece of code. No Docker, no hub.

``service_parts`` turns a ContainerSpec (and where the server must run) into the keyword arguments of
docker-py's ``ContainerSpec``, ``Resources``, ``Placement``, ``TaskTemplate`` and ``EndpointSpec`` and
the service's labels, as plain data (``ServiceParts``); ``GPUSwarmSpawner`` hands them to
DockerSpawner's ``SwarmSpawner``. What carries over from one host, and how:

| one host (container) | Swarm service |
|---|---|
| ``user``, ``cap_drop: ALL``, labels | ContainerSpec ``user``, ``cap_drop``, ``labels`` |
| memory and CPU caps, ``pids_limit`` | the task's resource limits (and the memory as reservation: no overcommit) |
| ``shm_size`` | a tmpfs mount at ``/dev/shm`` of that size |
| home volume | a volume on the node (``[engine] homes = "node"``) or a folder on shared storage (``"shared"``) |
| a session's course folder | with shared homes, a folder beside the homes (every node sees one); else a volume per node |
| datasets (read-only binds) | read-only bind mounts (the path must exist on every node) |
| ``no-new-privileges`` | the nodes' daemon default (``"no-new-privileges": true``: services cannot set it on API 1.41) |
| GPU device requests | ``NVIDIA_VISIBLE_DEVICES`` for the nodes' default runtime, and a ``node.id`` constraint |
| restart: never | restart condition ``none``: a server that ends stays ended; the hub's poll sees it |
| reached on the hub's network | the attachable overlay, endpoint mode ``dnsrr`` (no virtual IP, no published port) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..config.schema import Settings
from .containers import COURSE_PATH, ContainerSpec
from .profiles import default_profile

SHM_PATH = "/dev/shm"


@dataclass(frozen=True)
class Mount:
    """One mount of the service's container (docker-py ``Mount`` keyword arguments)."""

    target: str
    source: str
    type: str  # "volume", "bind" or "tmpfs"
    read_only: bool = False
    tmpfs_size: int | None = None


@dataclass(frozen=True)
class ServiceParts:
    container: dict  # ContainerSpec keyword arguments, less image, env and args (SwarmSpawner's)
    mounts: tuple[Mount, ...]
    resources: dict  # the task's ``Resources`` as the Docker API has them (docker-py's class has no Pids)
    constraints: tuple[str, ...]
    restart_condition: str
    endpoint_mode: str
    labels: dict = field(default_factory=dict)  # the service's own labels (the reconcile finds it by them)
    shared_folders: tuple[str, ...] = ()  # its folders on shared storage (its home, a course folder): made before it starts


def is_path(source: str) -> bool:
    return source.startswith("/")


def shared_home(shared_homes: str, home_volume: str) -> str:
    """A user's folder on shared storage: named as their home volume would be (a session's course
    folder: as its course volume)."""
    return str(PurePosixPath(shared_homes) / home_volume)


def service_parts(spec: ContainerSpec, node_id: str | None, shared_homes: str = "") -> ServiceParts:
    """The service running ``spec``: on ``node_id`` (the node of its GPUs, or without GPUs the node of
    the user's home) or, None, anywhere; its home and a session's course folder on ``shared_homes``
    when set (a folder each there, named as the volume), else volumes on the node."""
    mounts, shared = [], []
    for source, mount in spec.volumes.items():
        read_only = mount["mode"] == "ro"
        if shared_homes and (source == spec.home_volume or mount["bind"] == COURSE_PATH):
            shared.append(shared_home(shared_homes, source))
            mounts.append(Mount(mount["bind"], shared[-1], "bind", read_only))
        else:
            mounts.append(Mount(mount["bind"], source, "bind" if is_path(source) else "volume", read_only))
    host = spec.host_config
    if host.get("shm_size"):
        mounts.append(Mount(SHM_PATH, "", "tmpfs", False, int(host["shm_size"])))
    labels = dict(spec.create_kwargs.get("labels") or {})
    return ServiceParts(
        container={
            "user": spec.create_kwargs.get("user"),
            "cap_drop": list(host.get("cap_drop") or []),
            "labels": labels,
        },
        mounts=tuple(mounts),
        resources=task_resources(spec),
        constraints=(f"node.id=={node_id}",) if node_id else (),
        restart_condition="none",
        endpoint_mode="dnsrr",
        labels=labels,
        shared_folders=tuple(shared),
    )


def task_resources(spec: ContainerSpec) -> dict:
    """The task's limits as on one host (memory, CPUs, processes), its memory also reserved, so a
    node never takes more servers than its memory holds."""
    limits = {"MemoryBytes": spec.mem_limit, "NanoCPUs": int(spec.cpu_limit * 1e9)}
    if spec.host_config.get("pids_limit"):
        limits["Pids"] = int(spec.host_config["pids_limit"])
    return {"Limits": limits, "Reservations": {"MemoryBytes": spec.mem_limit}}


REPORTER_SERVICE = "gpuhub-node-reporter"
REPORTER_SECRET_PATH = "/run/secrets/gpuhub-reporter-token"
IMAGE_PYTHON = "/opt/gpuhub/venv/bin/python"  # gpuhub's single-user images: the reporter's and a home copy's


def helper_image(settings: Settings) -> str:
    """The image of the hub's own tasks on the nodes (the node reporters, home copies):
    ``[engine] reporter_image``, else the default profile's image, which the nodes pull anyway."""
    return settings.engine.reporter_image or default_profile(settings.profiles).image


@dataclass(frozen=True)
class ReporterSpec:
    """The node reporters' global service (``gpuhub.reporter`` on every node), as plain data."""

    name: str
    image: str
    command: tuple[str, ...]
    env: dict
    mounts: tuple[Mount, ...]
    user: str
    network: str
    secret_target: str
    labels: dict


def reporter_spec(inventory: str, activity: str, interval: int, image: str, hub_api: str, network: str, uid: int) -> ReporterSpec:
    """Every node reads ``inventory`` (``[gpus] inventory``) and ``activity`` (``[reclaim] activity``;
    ``{node}`` in a file path is the node's hostname) and reports to ``hub_api`` every ``interval``
    seconds, seeing every GPU of its node."""
    folders = [str(PurePosixPath(spec[len("file:"):]).parent) for spec in (inventory, activity) if spec.startswith("file:")]
    # SIMULATED files: their folders on each node, read-only
    mounts = tuple(Mount(folder, folder, "bind", True) for folder in dict.fromkeys(folders))
    return ReporterSpec(
        name=REPORTER_SERVICE,
        image=image,
        command=(IMAGE_PYTHON, "-m", "gpuhub.reporter"),
        env={
            "GPUHUB_HUB_API": hub_api,
            "GPUHUB_NODE_ID": "{{.Node.ID}}",
            "GPUHUB_NODE_HOSTNAME": "{{.Node.Hostname}}",
            "GPUHUB_INVENTORY": inventory,
            "GPUHUB_ACTIVITY": activity,
            "GPUHUB_REPORT_INTERVAL": str(interval),
            "GPUHUB_REPORTER_TOKEN_FILE": REPORTER_SECRET_PATH,
            "NVIDIA_VISIBLE_DEVICES": "all",  # the reporter reads every GPU of its node (NVML only: no compute)
            "NVIDIA_DRIVER_CAPABILITIES": "utility",
        },
        mounts=mounts,
        user=f"{uid}:{uid}",
        network=network,
        secret_target=PurePosixPath(REPORTER_SECRET_PATH).name,
        labels={"org.gpuhub.role": "node-reporter"},
    )


NETGUARD_SERVICE = "gpuhub-netguard"
HOST_PROC, HOST_RUN = "/hostproc", "/hostrun"  # where netguard's task sees the node's /proc and /run


@dataclass(frozen=True)
class NetguardSpec:
    """gpuhub-netguard's global service on the nodes (``[network] isolation`` on a Swarm), as plain data."""

    name: str
    image: str
    command: tuple[str, ...]
    mounts: tuple[Mount, ...]
    cap_add: tuple[str, ...]
    constraints: tuple[str, ...]
    labels: dict
    hub_addresses: tuple[str, ...]


def netguard_spec(image: str, hub_addresses: tuple[str, ...], node_socket: str, hub_node: str, node_addresses: tuple[str, ...] = ()) -> NetguardSpec:
    """gpuhub-netguard on every node but ``hub_node`` (the hub's own: docker-compose.yml's ``netguard``
    serves it, finding the hub's container there), with the node's network, its engine at
    ``node_socket`` (``{node}``: the node's hostname), its /proc and /run read-only, root with only the
    capabilities it needs (as in docker-compose.yml). The hub's container is on no worker's engine:
    ``hub_addresses``, its addresses on the users' overlay, go on the command line, so a hub that comes
    back with a new address updates the service, and every node's netguard writes every container's
    rules again as it restarts. ``node_addresses``: every node's address in the Swarm, refused to users'
    containers as their own node's addresses are (another node's SSH, engine, overlay traffic)."""
    return NetguardSpec(
        name=NETGUARD_SERVICE,
        image=image,
        # tini: Python as PID 1 would ignore SIGTERM, and each update of the service would wait out its stop grace
        command=(
            "tini", "--", IMAGE_PYTHON, "-m", "gpuhub.netguard", "--proc", HOST_PROC,
            *(f"--hub-address={a}" for a in hub_addresses), *(f"--node-address={a}" for a in node_addresses),
        ),
        mounts=(
            Mount("/var/run/docker.sock", node_socket.replace("{node}", "{{.Node.Hostname}}"), "bind"),
            Mount(HOST_PROC, "/proc", "bind", True),
            Mount(HOST_RUN, "/run", "bind", True),  # systemd-resolved's upstream servers (/run/systemd/resolve)
        ),
        cap_add=("NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"),
        constraints=(f"node.id!={hub_node}",),
        labels={"org.gpuhub.role": "netguard"},
        hub_addresses=hub_addresses,
    )


def task_address(task: dict | None, network: str) -> str | None:
    """A Swarm task's address on ``network`` (its name), from the task's ``NetworksAttachments``;
    None before the task has one. The hub reaches a server by this address rather than by its
    service's name: the name resolves only once the Swarm's gossip has spread it (seconds after the
    task runs, about 30 s after the manager's engine restarts), and a lookup that fails waits for
    the resolver's timeout."""
    for attachment in (task or {}).get("NetworksAttachments") or []:
        if (attachment.get("Network") or {}).get("Spec", {}).get("Name") == network:
            for address in attachment.get("Addresses") or []:
                return address.split("/")[0]
    return None
