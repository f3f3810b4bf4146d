"""Profile → container objects, as a table. Security defaults hold for every profile."""

import pytest

from gpuhub.contract import allocation_of
from gpuhub.engine.docker import docker_wiring
from gpuhub.policy import containers
from gpuhub.config.schema import parse_settings
from gpuhub.policy.slugs import user_slug
from tests.conftest import BASE_SETTINGS

GiB = 1024**3

TABLE = [
    # (profile, username, image override, mem, cpu, shm, volumes (source: (target, mode)))
    (
        "cpu-small", "alice", None, 4 * GiB, 1.0, 1 * GiB,
        {f"gpuhub-home-{user_slug('alice')}": ("/home/jovyan", "rw")},
    ),
    (
        "cpu-data", "bob.smith", None, 8 * GiB, 2.5, 2 * GiB,
        {f"gpuhub-home-{user_slug('bob.smith')}": ("/home/jovyan", "rw"), "imagenet-vol": ("/datasets/imagenet", "ro")},
    ),
    (
        "cpu-small", "Élodie", "example/other:1", 4 * GiB, 1.0, 1 * GiB,
        {f"gpuhub-home-{user_slug('Élodie')}": ("/home/jovyan", "rw")},
    ),
]


@pytest.mark.parametrize("profile, username, image, mem, cpu, shm, volumes", TABLE)
def test_build(profile, username, image, mem, cpu, shm, volumes):
    settings = parse_settings(BASE_SETTINGS)
    spec = containers.build(settings, settings.profile(profile), username, image)
    assert spec.image == (image or "gpuhub/pytorch-cuda:cpu")
    assert (spec.mem_limit, spec.cpu_limit) == (mem, cpu)
    assert spec.host_config["shm_size"] == shm
    assert spec.host_config["memswap_limit"] == mem  # no swap beyond the cap
    assert {src: (v["bind"], v["mode"]) for src, v in spec.volumes.items()} == volumes
    assert spec.home_volume == next(iter(volumes))
    # security defaults, for every profile
    assert spec.create_kwargs["user"] == "1000:1000"
    assert spec.host_config["cap_drop"] == ["ALL"]
    assert spec.host_config["security_opt"] == ["no-new-privileges:true"]
    assert spec.host_config["privileged"] is False
    assert spec.host_config["pids_limit"] == 4096
    assert "network_mode" not in spec.host_config  # the spawner's configured network, never "host"
    assert not any("docker.sock" in src for src in spec.volumes)
    # CPU-only: no GPU is visible even under the NVIDIA runtime
    assert spec.environment["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert spec.environment["GPUHUB_PROFILE"] == profile
    labels = spec.create_kwargs["labels"]
    assert labels["org.gpuhub.user"] == username and labels["org.gpuhub.profile"] == profile
    assert labels["org.gpuhub.server"] == ""  # the default server
    named = containers.build(settings, settings.profile(profile), username, image, server_name="exp-2")
    assert named.create_kwargs["labels"]["org.gpuhub.server"] == "exp-2"


def test_uid_and_template_come_from_settings():
    text = BASE_SETTINGS.replace(
        "[spawner]\n", '[spawner]\nuid = 1234\nhome_volume = "lab-{slug}-home"\npids_limit = 512\n'
    )
    settings = parse_settings(text)
    spec = containers.build(settings, settings.profile("cpu-small"), "carol")
    assert spec.create_kwargs["user"] == "1234:1234"
    assert spec.home_volume == f"lab-{user_slug('carol')}-home"
    assert spec.host_config["pids_limit"] == 512


def test_users_never_share_a_home_volume():
    settings = parse_settings(BASE_SETTINGS)
    names = ["alice", "Alice", "alice.", "alice_", "alice%2E"]
    homes = {containers.home_volume_name(settings, n) for n in names}
    assert len(homes) == len(names)


# --- GPUs: exactly the allocated devices, by UUID; CPU-only sees none ---------------------------------
U0, U1 = "GPU-00000000-0000-0000-0000-000000000000", "GPU-00000000-0000-0000-0000-000000000001"
M0 = "MIG-00000000-0000-0000-0000-000000000000"
GPU_TABLE = [
    # (assignment, exposure, simulated, device_requests, NVIDIA_VISIBLE_DEVICES, extra env)
    (None, "device_requests", False, None, "void", {"CUDA_VISIBLE_DEVICES": ""}),
    (
        containers.GpuAssignment(7, "exclusive", (U0, U1)), "device_requests", False,
        [{"driver": "nvidia", "device_ids": [U0, U1], "capabilities": [["gpu", "compute", "utility"]]}],
        f"{U0},{U1}",
        {"CUDA_VISIBLE_DEVICES": f"{U0},{U1}", "GPUHUB_GPU_EXPOSURE": "device_requests", "GPUHUB_GPU_SIMULATED": "false"},
    ),
    (
        containers.GpuAssignment(8, "shared", (U0,), 20 * GiB), "device_requests", False,
        [{"driver": "nvidia", "device_ids": [U0], "capabilities": [["gpu", "compute", "utility"]]}],
        U0,
        {"GPUHUB_GPU_MEMORY_BUDGET": str(20 * GiB), "GPUHUB_GPU_MODE": "shared"},
    ),
    (
        containers.GpuAssignment(9, "mig", (M0,)), "env-only", True,
        None,
        M0,
        {"CUDA_VISIBLE_DEVICES": M0, "GPUHUB_GPU_EXPOSURE": "env-only", "GPUHUB_GPU_SIMULATED": "true"},
    ),
]


@pytest.mark.parametrize("assignment, exposure, simulated, device_requests, visible, env", GPU_TABLE)
def test_gpu_wiring(assignment, exposure, simulated, device_requests, visible, env):
    settings = parse_settings(BASE_SETTINGS)
    devices = docker_wiring(assignment, exposure, simulated)
    spec = containers.build(settings, settings.profile("gpu-1"), "alice", devices=devices)
    assert spec.host_config.get("device_requests") == device_requests
    assert all("count" not in r for r in device_requests or [])  # never a count: everyone would get GPU 0
    assert spec.environment["NVIDIA_VISIBLE_DEVICES"] == visible
    for key, value in env.items():
        assert spec.environment[key] == value
    labels = spec.create_kwargs["labels"]
    if assignment is None:
        assert "org.gpuhub.allocation" not in labels and "GPUHUB_GPU_MEMORY_BUDGET" not in spec.environment
    else:
        assert labels["org.gpuhub.allocation"] == str(assignment.allocation_id)
        assert labels["org.gpuhub.gpus"] == visible and labels["org.gpuhub.gpu-exposure"] == exposure
        assert ("org.gpuhub.gpu-simulated" in labels) is simulated
        assert allocation_of(labels) == assignment.allocation_id  # how the engine finds the server again
    assert spec.host_config["cap_drop"] == ["ALL"]  # the security defaults stay whatever the GPUs
