"""GPU allocation through a real hub on the real engine, with a simulated inventory (4 whole GPUs and
2 MIG-partitioned GPUs) in the ``env-only`` exposure: this host has no GPU and no NVIDIA runtime, so
the containers get the device variables, which is exactly what the allocator decided.

Covers: each server sees only its own devices; CPU profiles see ``void``; a request that finds
nothing free waits in line with its place shown, and starts when a GPU is released; quota and
never-fits refusals change nothing; a hub ``kill -9`` with running servers (exclusive, shared, MIG)
loses nothing and leaks nothing; a failed start frees its GPU. (Containers removed behind the hub's
back, and the other faults, are the reliability tier's: tests/reliability/test_faults.py.)
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time

import pytest
import requests

from tests import hubprocess
from tests.hubprocess import USER_IMAGE, HubError, HubProcess, container_of, remove_prefixed

PREFIX = "gpuhubtest-gpu"


def gpu(i: int) -> str:
    return f"GPU-00000000-0000-0000-0000-{i:012d}"


def mig(i: int) -> str:
    return f"MIG-00000000-0000-0000-0000-{i:012d}"


INVENTORY = "".join(
    f'[[gpus]]\nuuid = "{gpu(i)}"\nname = "NVIDIA H100 80GB HBM3"\nmemory = "80G"\ncompute_capability = "9.0"\n\n'
    for i in range(4)
) + "".join(
    f'[[gpus]]\nuuid = "{gpu(i)}"\nname = "NVIDIA A100-SXM4-80GB"\nmemory = "80G"\ncompute_capability = "8.0"\n'
    f'[[gpus.mig]]\nuuid = "{mig(2 * i)}"\nprofile = "3g.40gb"\nmemory = "40G"\n'
    f'[[gpus.mig]]\nuuid = "{mig(2 * i + 1)}"\nprofile = "3g.40gb"\nmemory = "40G"\n\n'
    for i in (4, 5)
)
WHOLE = {gpu(i) for i in range(4)}
SLICES = {mig(j) for i in (4, 5) for j in (2 * i, 2 * i + 1)}


def gpu_settings(inventory_path, exposure="env-only") -> str:
    return f'''
[gpus]
inventory = "file:{inventory_path}"
exposure = "{exposure}"
queue_timeout = 300

[[quotas]]
max_gpus = 1

[[quotas]]
group = "big"
max_gpus = 16

[[profiles]]
name = "cpu-test"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "128M"
default = true

[[profiles]]
name = "gpu-1"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "128M"
gpus = 1
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-2"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "128M"
gpus = 2
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-8"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "128M"
gpus = 8
gpu_mode = "exclusive"

[[profiles]]
name = "gpu-shared"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "128M"
gpus = 1
gpu_mode = "shared"
gpu_memory = "20G"

[[profiles]]
name = "gpu-mig"
image = "{USER_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
shm_size = "128M"
gpus = 1
gpu_mode = "mig"
mig_profile = "3g.40gb"
'''


# poll often, so a container removed behind the hub's back is noticed within seconds
FAST_POLL = "c.Spawner.poll_interval = 2\n"


def make_hub(tmp_path, prefix=PREFIX, exposure="env-only") -> HubProcess:
    workdir = tmp_path / prefix
    workdir.mkdir()
    (workdir / "inventory.toml").write_text(INVENTORY)
    return HubProcess(
        workdir, prefix=prefix, profiles=gpu_settings(workdir / "inventory.toml", exposure), extra_config=FAST_POLL
    )


@pytest.fixture
def gpu_hub(tmp_path):
    remove_prefixed(PREFIX)
    hub = make_hub(tmp_path)
    hub.start()
    yield hub
    hub.stop()
    hub.remove_docker_objects()


def env_of(container) -> dict:
    container.reload()
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def live_allocations(hub) -> dict[int, tuple[str, set[str]]]:
    """allocation id -> (username, device UUIDs) of the live allocations."""
    out: dict[int, tuple[str, set[str]]] = {}
    for aid, username, uuid in hubprocess.live_allocations(hub):
        out.setdefault(aid, (username, set()))[1].add(uuid)
    return out


def assignments(hub) -> dict[str, tuple[str, str]]:
    """user -> (allocation label, NVIDIA_VISIBLE_DEVICES) of every running test container."""
    out = {}
    for c in hub.containers():
        env = env_of(c)
        out[c.labels["org.gpuhub.user"]] = (c.labels.get("org.gpuhub.allocation", ""), env["NVIDIA_VISIBLE_DEVICES"])
    return out


def request_server(hub, user, profile):
    hub.create_user(user)
    r = hub.api("POST", f"/users/{user}/server", {"profile": profile})
    assert r.status_code in (201, 202), r.text
    return r


def first_progress_message(hub, user, timeout=30) -> str:
    """The first message of the spawn's progress event stream (what the spawn page shows)."""
    url = f"{hub.url}/hub/api/users/{user}/server/progress"
    with hub.session.get(url, stream=True, timeout=timeout) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                if "waiting" in event.get("message", ""):
                    return event["message"]
    raise AssertionError("no progress event")


def hold_every_whole_gpu(hub, prefix: str) -> list[str]:
    """Four users, each with a ready one-GPU server: every whole GPU of the inventory is held."""
    holders = [f"{prefix}{i}" for i in range(4)]
    for user in holders:
        request_server(hub, user, "gpu-1")
    for user in holders:
        hub.wait_ready(user)
    return holders


def wait_until(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_each_server_sees_only_its_own_devices_and_a_waiting_spawn_starts_on_release(gpu_hub):
    hub = gpu_hub
    plan = {"ex1": "gpu-1", "ex2": "gpu-1", "ex3": "gpu-1", "sh1": "gpu-shared", "mig1": "gpu-mig", "cpu1": "cpu-test"}
    for user, profile in plan.items():
        request_server(hub, user, profile)
    for user in plan:
        hub.wait_ready(user)

    seen = {user: env_of(container_of(hub, user)) for user in plan}
    exclusive = [seen[u]["NVIDIA_VISIBLE_DEVICES"] for u in ("ex1", "ex2", "ex3")]
    assert len(set(exclusive)) == 3 and set(exclusive) <= WHOLE  # three different whole GPUs
    for user in ("ex1", "ex2", "ex3", "sh1", "mig1"):
        assert seen[user]["CUDA_VISIBLE_DEVICES"] == seen[user]["NVIDIA_VISIBLE_DEVICES"]
        assert seen[user]["GPUHUB_GPU_EXPOSURE"] == "env-only" and seen[user]["GPUHUB_GPU_SIMULATED"] == "true"
    shared = seen["sh1"]["NVIDIA_VISIBLE_DEVICES"]
    assert shared in WHOLE - set(exclusive)  # the fourth whole GPU, not an exclusively held one
    assert seen["sh1"]["GPUHUB_GPU_MEMORY_BUDGET"] == str(20 * 1024**3)
    # in the env-only exposure the server extension says plainly that there is no real device
    gpus = hub.session.get(f"{hub.user_server_url('ex1')}gpuhub/api/v1/gpus", timeout=30).json()
    assert gpus["state"] == "unavailable" and "env-only exposure" in gpus["message"]
    assert gpus["assigned"] == [seen["ex1"]["NVIDIA_VISIBLE_DEVICES"]]
    # the image's IPython config registers that budget with PyTorch at kernel start
    code, out = container_of(hub, "sh1").exec_run(
        ["ipython", "--quiet", "-c", "import gpuhub.singleuser.budget as b; print('budget', b.registered)"]
    )
    assert code == 0 and f"budget {20 * 1024**3}" in out.decode(), out
    assert seen["mig1"]["NVIDIA_VISIBLE_DEVICES"] in SLICES
    assert seen["cpu1"]["NVIDIA_VISIBLE_DEVICES"] == "void" and seen["cpu1"]["CUDA_VISIBLE_DEVICES"] == ""
    labels = container_of(hub, "ex1").labels
    assert labels["org.gpuhub.gpus"] == seen["ex1"]["NVIDIA_VISIBLE_DEVICES"]
    assert labels["org.gpuhub.gpu-exposure"] == "env-only"
    # the database agrees with the containers: one allocation per GPU server, none for the CPU one
    live = live_allocations(hub)
    assert sorted(u for u, _ in live.values()) == ["ex1", "ex2", "ex3", "mig1", "sh1"]
    for user in ("ex1", "ex2", "ex3", "sh1", "mig1"):
        aid = int(container_of(hub, user).labels["org.gpuhub.allocation"])
        assert live[aid] == (user, {seen[user]["NVIDIA_VISIBLE_DEVICES"]})

    # every whole GPU is now held (three exclusively, one shared): the next exclusive request waits
    request_server(hub, "ex4", "gpu-1")
    assert first_progress_message(hub, "ex4") == "waiting for a GPU (exclusive×1): 1st of 1 in line"
    model = hub.api("GET", "/users/ex4", expect=200).json()
    assert model["servers"][""]["pending"] == "spawn" and not model["servers"][""]["ready"]
    freed = seen["ex2"]["NVIDIA_VISIBLE_DEVICES"]
    hub.stop_server("ex2")
    hub.wait_ready("ex4", timeout=60)
    assert env_of(container_of(hub, "ex4"))["NVIDIA_VISIBLE_DEVICES"] == freed
    assert "ex2" not in {u for u, _ in live_allocations(hub).values()}


def test_a_burst_of_gpu_spawns_gets_distinct_gpus_from_one_pool(gpu_hub):
    """Four users POST at once for the four whole GPUs: all start, each on its own GPU, and the hub
    keeps one pool (one inventory read, one reconcile) for all its spawners."""
    hub = gpu_hub
    users = [f"burst{i}" for i in range(4)]
    for user in users:
        hub.create_user(user)
    answers = {}

    def post(user):
        session = requests.Session()
        session.headers["Authorization"] = f"token {hub.token}"
        answers[user] = session.post(f"{hub.url}/hub/api/users/{user}/server", json={"profile": "gpu-1"}, timeout=60)

    threads = [threading.Thread(target=post, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {u: r.status_code for u, r in answers.items()} == dict.fromkeys(users, 201) | {
        u: 202 for u, r in answers.items() if r.status_code == 202
    }, {u: r.text for u, r in answers.items()}
    for user in users:
        hub.wait_ready(user)
    devices = [env_of(container_of(hub, u))["NVIDIA_VISIBLE_DEVICES"] for u in users]
    assert sorted(devices) == sorted(WHOLE)
    assert sorted(u for u, _ in live_allocations(hub).values()) == users
    log = hub.log_path.read_text()
    assert log.count("gpuhub: GPU inventory from") == 1 and "gpuhub reconcile: freed" not in log


def test_refusals_are_immediate_and_change_nothing(gpu_hub):
    hub = gpu_hub
    hub.create_user("greedy")
    before = live_allocations(gpu_hub), {c.id for c in hub.containers()}
    r = hub.api("POST", "/users/greedy/server", {"profile": "gpu-2"})
    assert r.status_code == 403, r.text
    assert "max_gpus = 1 (set by the default (settings))" in r.json()["message"]
    # in a group with a larger quota, the pool's size is what refuses 8 GPUs, at once
    hub.api("POST", "/groups/big", {"users": ["greedy"]}, expect=201)
    started = time.monotonic()
    r = hub.api("POST", "/users/greedy/server", {"profile": "gpu-8"})
    assert r.status_code == 409, r.text
    assert "can never start on this hub: 8 whole GPUs asked; this pool has 4" in r.json()["message"]
    assert time.monotonic() - started < 10  # refused, not queued
    assert (live_allocations(gpu_hub), {c.id for c in hub.containers()}) == before


def test_hub_kill_9_with_running_servers_loses_nothing_and_leaks_nothing(gpu_hub):
    hub = gpu_hub
    for user, profile in {"k1": "gpu-1", "k2": "gpu-shared", "k3": "gpu-mig", "k4": "cpu-test"}.items():
        request_server(hub, user, profile)
    for user in ("k1", "k2", "k3", "k4"):
        hub.wait_ready(user)
    before_assignments, before_live = assignments(hub), live_allocations(hub)
    before_ids = {c.name: c.id for c in hub.containers()}

    hub.process.send_signal(signal.SIGKILL)
    hub.process.wait()
    hub.stop()  # the proxy outlives a killed hub
    hub.start()

    for user in ("k1", "k2", "k3", "k4"):
        hub.wait_ready(user, timeout=30)
    assert {c.name: c.id for c in hub.containers()} == before_ids  # the same containers, still running
    assert assignments(hub) == before_assignments
    assert live_allocations(hub) == before_live
    log = hub.log_path.read_text()
    assert log.count("gpuhub reconcile: kept allocation") >= 3
    # and the next spawn works: the GPUs held before the restart are still not handed out again
    request_server(hub, "k5", "gpu-1")
    hub.wait_ready("k5")
    held = {d for _, devices in before_live.values() for d in devices}
    assert env_of(container_of(hub, "k5"))["NVIDIA_VISIBLE_DEVICES"] not in held


def test_a_failed_start_frees_its_gpu(tmp_path):
    """Production exposure on a host without the NVIDIA runtime: the engine refuses to start the
    container, the spawn fails with the engine's reason, and the GPU goes back to the pool."""
    prefix = "gpuhubtest-gpuprod"
    remove_prefixed(prefix)
    hub = make_hub(tmp_path, prefix=prefix, exposure="device_requests")
    try:
        hub.start()
        hub.create_user("unlucky")
        r = hub.api("POST", "/users/unlucky/server", {"profile": "gpu-1"})
        if r.status_code in (201, 202):
            with pytest.raises(HubError):
                hub.wait_ready("unlucky", timeout=60)
        else:
            assert r.status_code == 500, r.text
        wait_until(lambda: not live_allocations(hub), what="the allocation of the failed start to be released")
        db = sqlite3.connect(hub.db_url.removeprefix("sqlite:///"))
        reasons = [r for (r,) in db.execute("SELECT release_reason FROM gpuhub_allocations")]
        db.close()
        assert reasons == ["the server failed to start"]
        wait_until(lambda: not hub.containers(), what="the failed container to be removed")
    finally:
        hub.stop()
        hub.remove_docker_objects()


def test_production_exposure_hands_the_engine_device_ids_never_a_count():
    """What ``device_requests`` exposure sends: the engine stores the request by UUID (created, not
    started: this host has no NVIDIA runtime to start it with)."""
    import docker

    from gpuhub.config.schema import parse_settings
    from gpuhub.engine.docker import docker_wiring
    from gpuhub.policy import containers

    settings = parse_settings(gpu_settings("/nonexistent/inventory.toml", "device_requests").replace(
        "[gpus]", f'[spawner]\nallowed_images = ["{USER_IMAGE}"]\n\n[gpus]', 1
    ))
    assignment = containers.GpuAssignment(41, "exclusive", (gpu(0), gpu(2)))
    spec = containers.build(settings, settings.profile("gpu-2"), "prod-user", devices=docker_wiring(assignment, "device_requests", False))
    api = docker.from_env().api
    name = f"{PREFIX}-create-only"
    remove_prefixed(name)
    created = api.create_container(
        spec.image,
        name=name,
        command=["true"],
        environment=spec.environment,
        labels=spec.create_kwargs["labels"],
        host_config=api.create_host_config(mem_limit=spec.mem_limit, **spec.host_config),
    )
    try:
        info = api.inspect_container(created["Id"])
        (device_request,) = info["HostConfig"]["DeviceRequests"]
        assert device_request["Driver"] == "nvidia"
        assert device_request["DeviceIDs"] == [gpu(0), gpu(2)]
        assert device_request["Count"] == 0  # no count: the IDs alone decide
        assert ["gpu", "compute", "utility"] in device_request["Capabilities"]
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        assert env["NVIDIA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"] == f"{gpu(0)},{gpu(2)}"
        assert info["Config"]["Labels"]["org.gpuhub.allocation"] == "41"
    finally:
        api.remove_container(created["Id"], force=True)


def test_cancelling_a_waiting_spawn_leaves_the_line(gpu_hub):
    """All four whole GPUs held; a fifth exclusive request waits; its user cancels (DELETE on the
    pending server). When a GPU is freed afterwards, nothing is allocated or started for them."""
    hub = gpu_hub
    hold_every_whole_gpu(hub, "h")
    request_server(hub, "quitter", "gpu-1")
    assert first_progress_message(hub, "quitter") == "waiting for a GPU (exclusive×1): 1st of 1 in line"
    r = hub.api("DELETE", "/users/quitter/server")
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: not hub.api("GET", "/users/quitter", expect=200).json()["servers"], what="the spawn to be cancelled")
    hub.stop_server("h0")
    time.sleep(3)  # a waiter still in line would have taken the freed GPU by now
    assert "quitter" not in {u for u, _ in live_allocations(hub).values()}
    assert not [c for c in hub.containers() if c.labels.get("org.gpuhub.user") == "quitter"]
    # and the freed GPU is there for the next person
    request_server(hub, "next", "gpu-1")
    hub.wait_ready("next")
