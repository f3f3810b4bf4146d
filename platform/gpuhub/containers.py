"""Pure builders of a user container's Docker objects from a profile. No Docker, no hub.

``build()`` returns a ``ContainerSpec``: what GPUSpawner hands to DockerSpawner (image, memory and
CPU caps, volumes, extra host config, extra create kwargs, environment). Security defaults live here
and nowhere else: the image's uid (never 0), no-new-privileges, every capability dropped, a pids
limit, no swap beyond the memory cap, no host network, no Docker socket (the settings refuse it as
a dataset source, and nothing else binds host paths).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import Profile, Settings
from .slugs import render_name

LABEL_PREFIX = "org.gpuhub"


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


def build(settings: Settings, profile: Profile, username: str, image: str | None = None) -> ContainerSpec:
    """The container for ``username`` running ``profile`` (``image`` overrides the profile's, already
    checked against the allowed list by the caller)."""
    sp = settings.spawner
    home = home_volume_name(settings, username)
    volumes = {home: {"bind": sp.home_path, "mode": "rw"}}
    for name in profile.datasets:
        dataset = settings.dataset(name)
        volumes[dataset.source] = {"bind": dataset.target, "mode": "ro"}
    labels = {
        f"{LABEL_PREFIX}.managed": "true",
        f"{LABEL_PREFIX}.user": username,
        f"{LABEL_PREFIX}.profile": profile.name,
        f"{LABEL_PREFIX}.home-volume": home,
    }
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
        },
        create_kwargs={"user": f"{sp.uid}:{sp.uid}", "labels": labels},
        environment={
            "GPUHUB_PROFILE": profile.name,
            "GPUHUB_MEM_LIMIT": str(profile.mem_limit),
            "GPUHUB_CPU_LIMIT": f"{profile.cpu_limit:g}",
            # CPU-only: even under the NVIDIA runtime the container sees no GPU.
            "NVIDIA_VISIBLE_DEVICES": "void",
            "CUDA_VISIBLE_DEVICES": "",
        },
    )
