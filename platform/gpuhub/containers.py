"""Pure builders of a user container's Docker objects from a profile. No Docker, no hub.

``build()`` returns a ``ContainerSpec``: what GPUSpawner hands to DockerSpawner (image, memory and
CPU caps, volumes, extra host config, extra create kwargs, environment). Security defaults live here
and nowhere else: the image's uid (never 0), no-new-privileges, every capability dropped, a pids
limit, no swap beyond the memory cap, no host network, no Docker socket (the settings refuse it as
a dataset source, and nothing else binds host paths).

GPUs (``gpu_wiring``): a CPU-only container gets ``NVIDIA_VISIBLE_DEVICES=void`` (even under the
NVIDIA runtime it sees no GPU). A GPU container gets exactly the devices of its allocation, by UUID:
``device_requests`` with ``device_ids`` (never ``count``, which gives everyone the same GPU) in the
``device_requests`` exposure, and in both exposures ``NVIDIA_VISIBLE_DEVICES`` and
``CUDA_VISIBLE_DEVICES`` naming the same UUIDs, plus labels naming the allocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sessions import Session
from .settings import Profile, Settings
from .slugs import render_name

LABEL_PREFIX = "org.gpuhub"
COURSE_PATH = "/srv/course"  # a session's shared course folder (the image makes it, owned by the user)


@dataclass(frozen=True)
class GpuAssignment:
    """What the allocator gave a server, and how the container is to get it."""

    allocation_id: int
    mode: str  # "exclusive", "shared" or "mig"
    uuids: tuple[str, ...]  # GPU-... or MIG-... UUIDs
    memory_bytes: int = 0  # shared: the budget
    exposure: str = "device_requests"  # or "env-only"
    simulated: bool = False  # the inventory came from a file


def gpu_wiring(gpu: GpuAssignment | None) -> tuple[dict, dict, dict]:
    """(host config, environment, labels) giving a container exactly its assigned devices."""
    if gpu is None:
        # CPU-only: even under the NVIDIA runtime the container sees no GPU.
        return {}, {"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""}, {}
    ids = ",".join(gpu.uuids)
    env = {
        "NVIDIA_VISIBLE_DEVICES": ids,
        "CUDA_VISIBLE_DEVICES": ids,
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "GPUHUB_GPU_MODE": gpu.mode,
        "GPUHUB_GPU_EXPOSURE": gpu.exposure,
        "GPUHUB_GPU_SIMULATED": "true" if gpu.simulated else "false",
    }
    if gpu.mode == "shared":
        env["GPUHUB_GPU_MEMORY_BUDGET"] = str(gpu.memory_bytes)
    labels = {
        f"{LABEL_PREFIX}.allocation": str(gpu.allocation_id),
        f"{LABEL_PREFIX}.gpus": ids,
        f"{LABEL_PREFIX}.gpu-mode": gpu.mode,
        f"{LABEL_PREFIX}.gpu-exposure": gpu.exposure,
    }
    if gpu.simulated:
        labels[f"{LABEL_PREFIX}.gpu-simulated"] = "true"
    host = {}
    if gpu.exposure == "device_requests":
        host["device_requests"] = [
            {"driver": "nvidia", "device_ids": list(gpu.uuids), "capabilities": [["gpu", "compute", "utility"]]}
        ]
    return host, env, labels


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


def build(
    settings: Settings,
    profile: Profile,
    username: str,
    image: str | None = None,
    gpu: GpuAssignment | None = None,
    session: Session | None = None,
    server_name: str = "",
) -> ContainerSpec:
    """The container for ``username`` running ``profile`` (``image`` overrides the profile's, already
    checked against the allowed list by the caller) with the devices of ``gpu`` (None: CPU only).
    For a classroom ``session``: its datasets too (read-only), and its shared course folder at
    ``COURSE_PATH``, writable by the session's instructors, read-only for students."""
    sp = settings.spawner
    home = home_volume_name(settings, username)
    volumes = {home: {"bind": sp.home_path, "mode": "rw"}}
    datasets = profile.datasets + list(session.datasets if session else ())
    for name in dict.fromkeys(datasets):
        dataset = settings.dataset(name)
        volumes[dataset.source] = {"bind": dataset.target, "mode": "ro"}
    labels = {
        f"{LABEL_PREFIX}.managed": "true",
        f"{LABEL_PREFIX}.user": username,
        f"{LABEL_PREFIX}.server": server_name,  # "" for the default server
        f"{LABEL_PREFIX}.profile": profile.name,
        f"{LABEL_PREFIX}.home-volume": home,
    }
    session_env = {}
    if session is not None:
        labels[f"{LABEL_PREFIX}.session"] = session.name
        session_env["GPUHUB_SESSION"] = session.name
        if session.shared_folder:
            writable = username in session.instructors
            volumes[course_volume_name(settings, session.name)] = {"bind": COURSE_PATH, "mode": "rw" if writable else "ro"}
    gpu_host, gpu_env, gpu_labels = gpu_wiring(gpu)
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
            **gpu_host,
        },
        create_kwargs={"user": f"{sp.uid}:{sp.uid}", "labels": {**labels, **gpu_labels}},
        environment={
            "GPUHUB_PROFILE": profile.name,
            "GPUHUB_MEM_LIMIT": str(profile.mem_limit),
            "GPUHUB_CPU_LIMIT": f"{profile.cpu_limit:g}",
            **session_env,
            **gpu_env,
        },
    )
