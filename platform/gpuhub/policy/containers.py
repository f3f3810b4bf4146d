"""Pure builders of a user container's objects from a profile. No Docker, no hub.

``build()`` returns a ``ContainerSpec``: what GPUSpawner hands to DockerSpawner (image, memory and
CPU caps, volumes, extra host config, extra create kwargs, environment). Security defaults live here
and nowhere else: the image's uid (never 0), no-new-privileges, every capability dropped, a pids
limit, no swap beyond the memory cap, no host network, no Docker socket (the settings refuse it as
a dataset source, and nothing else binds host paths), and with ``[network] isolation`` the network
policy (``policy.network``) as a label the container's start waits on.

GPUs: how a container gets its devices is the engine's (``gpuhub.engine``): it turns the
allocation's ``GpuAssignment`` into ``DeviceWiring`` (host config, environment, labels), which
``build`` merges in. ``CPU_ONLY`` is the wiring of a server without GPUs: ``NVIDIA_VISIBLE_DEVICES=void``,
so even under the NVIDIA runtime it sees none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import contract as c
from ..config.schema import Profile, Settings
from .network import policy_for
from .sessions import Session
from .slugs import render_name

COURSE_PATH = "/srv/course"  # a session's shared course folder (the image makes it, owned by the user)


@dataclass(frozen=True)
class GpuAssignment:
    """What the allocator gave a server: the engine turns it into ``DeviceWiring``."""

    allocation_id: int
    mode: str  # "exclusive", "shared" or "mig"
    uuids: tuple[str, ...]  # GPU-... or MIG-... UUIDs
    memory_bytes: int = 0  # shared: the budget
    borrowed: bool = False  # beyond the user's GPU quota ([borrowing]): the server shows it


@dataclass(frozen=True)
class DeviceWiring:
    """How a container gets its devices, from the engine: merged into ``build``'s objects."""

    host_config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)


CPU_ONLY = DeviceWiring(environment={c.VISIBLE_DEVICES_ENV: c.NO_DEVICES, c.CUDA_DEVICES_ENV: ""})


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    mem_limit: int
    cpu_limit: float
    home_volume: str
    volumes: dict = field(default_factory=dict)
    host_config: dict = field(default_factory=dict)
    create_kwargs: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)


def home_volume_name(settings: Settings, username: str) -> str:
    return render_name(settings.spawner.home_volume, username)


def course_volume_name(settings: Settings, session_name: str) -> str:
    return settings.sessions.course_volume.replace("{session}", session_name)


def group_network_name(settings: Settings, session: Session | None) -> str:
    """The network of ``session``'s group work its members' servers join; "" where there is none (no
    session, no group work, or no isolation: then every server reaches every other anyway; on a Swarm,
    where ``web.payloads.parse_session`` refuses group work)."""
    if session is None or not session.group_work or policy_for(settings) is None or settings.engine.kind != "docker":
        return ""
    return settings.sessions.group_network.replace("{session}", session.name)


def build(
    settings: Settings,
    profile: Profile,
    username: str,
    image: str | None = None,
    devices: DeviceWiring = CPU_ONLY,
    session: Session | None = None,
    server_name: str = "",
    network_peers: tuple[str, ...] = (),
) -> ContainerSpec:
    """The container for ``username`` running ``profile`` (``image`` overrides the profile's, already
    checked against the allowed list by the caller) with the engine's ``devices`` wiring (default: none).
    For a classroom ``session``: its datasets too (read-only), and its shared course folder at
    ``COURSE_PATH``, writable by the session's instructors, read-only for students; ``network_peers``:
    the subnet of its group network (``group_network_name``), whose members may reach each other."""
    sp = settings.spawner
    home = home_volume_name(settings, username)
    volumes = {home: {"bind": sp.home_path, "mode": "rw"}}
    datasets = profile.datasets + list(session.datasets if session else ())
    for name in dict.fromkeys(datasets):
        dataset = settings.dataset(name)
        volumes[dataset.source] = {"bind": dataset.target, "mode": "ro"}
    labels = {
        c.MANAGED_LABEL: "true",
        c.USER_LABEL: username,
        c.SERVER_LABEL: server_name,  # "" for the default server
        c.PROFILE_LABEL: profile.name,
        c.HOME_VOLUME_LABEL: home,
        c.HUB_ROLE_LABEL: "user",  # overrides an image's own label: no image makes its container "the hub"
    }
    extra_env = {}
    if session is not None:
        labels[c.SESSION_LABEL] = session.name
        extra_env[c.SESSION_ENV] = session.name
        if session.shared_folder:
            writable = username in session.instructors
            volumes[course_volume_name(settings, session.name)] = {"bind": COURSE_PATH, "mode": "rw" if writable else "ro"}
    network = policy_for(settings, network_peers)
    if network is not None:  # the image's start waits for netguard to put the policy's rules in place
        labels[c.NETWORK_LABEL] = network.label()
        extra_env[c.NETWORK_WAIT_ENV] = str(settings.network.rules_wait)
    return ContainerSpec(
        image=image or profile.image,
        mem_limit=profile.mem_limit,
        cpu_limit=profile.cpu_limit,
        home_volume=home,
        volumes=volumes,
        host_config={
            "shm_size": profile.shm_size,
            "memswap_limit": profile.mem_limit,
            "pids_limit": sp.pids_limit,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "privileged": False,
            **devices.host_config,
        },
        create_kwargs={"user": f"{sp.uid}:{sp.uid}", "labels": {**labels, **devices.labels}},
        environment={
            c.PROFILE_ENV: profile.name,
            c.MEM_LIMIT_ENV: str(profile.mem_limit),
            c.CPU_LIMIT_ENV: f"{profile.cpu_limit:g}",
            **extra_env,
            **devices.environment,
        },
    )


def with_labels(spec: ContainerSpec, labels: dict) -> ContainerSpec:
    """``spec`` with more labels on its container (a batch job's id)."""
    return replace(spec, create_kwargs={**spec.create_kwargs, "labels": {**spec.create_kwargs.get("labels", {}), **labels}})
