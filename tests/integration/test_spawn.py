"""Spawning through the hub's REST API on the real engine: the container is what the profile says,
locked down, with a home that outlives it; refused requests change nothing."""

import time

import pytest

from gpuhub.policy.slugs import user_slug

MiB = 1024**2


def inspect_container(hub, username):
    (container,) = [c for c in hub.containers() if c.labels.get("org.gpuhub.user") == username]
    container.reload()
    return container


def exec_in(container, cmd):
    code, out = container.exec_run(["sh", "-c", cmd])
    assert code == 0, out
    return out.decode().strip()


def test_cpu_profile_container_is_capped_and_locked_down(hub, user):
    hub.start_server(user, {"profile": "cpu-test"})
    c = inspect_container(hub, user)
    cfg, host = c.attrs["Config"], c.attrs["HostConfig"]

    assert cfg["Image"] == "gpuhub/pytorch-cuda:cpu"
    assert cfg["User"] == "1000:1000"
    assert host["Memory"] == 768 * MiB
    assert host["MemorySwap"] == 768 * MiB
    assert (host["CpuQuota"], host["CpuPeriod"]) == (50_000, 100_000)
    assert host["ShmSize"] == 256 * MiB
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "bridge"
    assert cfg["Labels"]["org.gpuhub.profile"] == "cpu-test"
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    home = mounts["/home/jovyan"]
    assert (home["Type"], home["Name"], home["RW"]) == ("volume", f"gpuhubtest-home-{user_slug(user)}", True)
    assert not any("docker.sock" in (m.get("Source") or "") for m in c.attrs["Mounts"])

    # what the process inside sees
    assert exec_in(c, "id -u") == "1000"
    assert exec_in(c, "grep NoNewPrivs /proc/self/status").split() == ["NoNewPrivs:", "1"]
    assert exec_in(c, "grep CapEff /proc/self/status").split() == ["CapEff:", "0000000000000000"]
    assert exec_in(c, "df -m /dev/shm | tail -1 | tr -s ' ' | cut -d' ' -f2") == "256"
    assert exec_in(c, "stat -c %u /home/jovyan") == "1000"
    assert exec_in(c, "echo $NVIDIA_VISIBLE_DEVICES") == "void"
    assert exec_in(c, "test -S /var/run/docker.sock && echo yes || echo no") == "no"
    assert exec_in(c, "cat /proc/1/comm") == "tini"


def test_home_file_survives_stop_and_start(hub, user):
    hub.start_server(user, {"profile": "cpu-test"})
    contents = f"{hub.user_server_url(user)}api/contents/keep.txt"
    body = {"type": "file", "format": "text", "content": "still here"}
    r = hub.session.put(contents, json=body, timeout=30)
    assert r.status_code == 201, r.text
    first_id = inspect_container(hub, user).id

    hub.stop_server(user)
    assert not [c for c in hub.containers() if c.labels.get("org.gpuhub.user") == user]  # removed, volume kept

    hub.start_server(user, {"profile": "cpu-test-big"})
    assert inspect_container(hub, user).id != first_id
    r = hub.session.get(contents, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "still here"


def test_image_outside_allowed_list_is_refused_with_the_allowed_ones(hub, user):
    before = {c.id for c in hub.containers()}
    r = hub.api("POST", f"/users/{user}/server", {"profile": "cpu-test", "image": "debian:bookworm"})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "debian:bookworm" in message and "gpuhub/pytorch-cuda:cpu" in message
    assert {c.id for c in hub.containers()} == before
    assert not hub.api("GET", f"/users/{user}", expect=200).json()["servers"]


@pytest.mark.parametrize(
    "options, status, fragment",
    [
        # the harness's hub has no [gpus] table: inventory "auto" finds no NVML on this host
        ({"profile": "gpu-1"}, 409, "Profile 'gpu-1' can never start on this hub: this hub has no GPU: no GPU (NVML:"),
        ({"profile": "nope"}, 400, "No such profile: 'nope'. Options include: cpu-test, cpu-test-big, cpu-data, gpu-1"),
        ({"profile": "cpu-test", "mem_limit": "64G"}, 400, "Unknown spawn option(s): 'mem_limit'"),
    ],
)
def test_bad_spawn_options_are_refused_and_change_nothing(hub, user, options, status, fragment):
    before = {c.id for c in hub.containers()}
    r = hub.api("POST", f"/users/{user}/server", options)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]
    assert {c.id for c in hub.containers()} == before
    time.sleep(0.5)
    assert not hub.api("GET", f"/users/{user}", expect=200).json()["servers"]


def test_dataset_is_mounted_read_only(hub, user):
    from tests.hubprocess import DATASET_VOLUME, USER_IMAGE

    hub.docker.containers.run(
        USER_IMAGE, ["sh", "-c", "echo reference > /d/labels.txt"], user="0", entrypoint=[],
        volumes={DATASET_VOLUME: {"bind": "/d", "mode": "rw"}}, remove=True,
    )
    hub.start_server(user, {"profile": "cpu-data"})
    c = inspect_container(hub, user)
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    assert (mounts["/datasets/ref"]["Name"], mounts["/datasets/ref"]["RW"]) == (DATASET_VOLUME, False)
    assert exec_in(c, "cat /datasets/ref/labels.txt") == "reference"
    code, out = c.exec_run(["sh", "-c", "echo x > /datasets/ref/new.txt"])
    assert code != 0 and b"Read-only file system" in out


def test_environment_check_runs_inside_the_users_container(hub, user):
    """The env check, run in a real CPU server: non-root, home on its volume, the container's real
    limits, shm below what DataLoader workers want, torch present, and every GPU check skipped with
    the reason (no GPU assigned), nothing crashing."""
    import json

    hub.start_server(user, {"profile": "cpu-test"})
    c = inspect_container(hub, user)
    report = json.loads(exec_in(c, "python3 -m gpuhub.singleuser.envcheck"))
    checks = {check["id"]: check for check in report["checks"]}
    assert checks["non-root"]["status"] == "pass" and checks["non-root"]["value"] == "uid 1000"
    assert checks["home"]["status"] == "pass" and checks["home"]["value"] == "/home/jovyan (a volume)"
    assert "memory 0.75 GiB, CPU 0.5 CPUs" in checks["limits"]["value"]
    assert checks["shm"]["status"] == "warn" and checks["shm"]["value"] == "0.25 GiB"
    assert checks["torch"]["status"] == "pass" and "torch 2.13.0" in checks["torch"]["value"]
    assert checks["cuda"]["status"] == "skip" and "CPU build" in checks["cuda"]["hint"]
    for gpu_check in ("driver", "devices", "precision", "cudnn", "nccl", "alloc", "matmul"):
        assert checks[gpu_check]["status"] == "skip" and "no GPU assigned" in checks[gpu_check]["hint"]


def test_server_extension_answers_through_the_hub(hub, user):
    """gpuhub's server extension is enabled in the image: through the proxy, with a token allowed to
    access the server, the GPU endpoint answers the no-GPU state with the container's real limits,
    and the environment check runs and is kept."""
    hub.start_server(user, {"profile": "cpu-test"})
    base = f"{hub.user_server_url(user)}gpuhub/api/v1"
    r = hub.session.get(f"{base}/gpus", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "no-gpu"
    assert body["limits"] == {"cgroup": body["limits"]["cgroup"], "memory_limit": 768 * MiB,
                              "memory_used": body["limits"]["memory_used"], "cpu_limit": 0.5}
    r = hub.session.post(f"{base}/envcheck", timeout=120)
    assert r.status_code == 200, r.text
    assert {c["id"]: c["status"] for c in r.json()["checks"]}["non-root"] == "pass"
    assert hub.session.get(f"{base}/envcheck", timeout=30).json() == r.json()
    # without credentials: refused (redirected to log in or forbidden), nothing leaks
    anonymous = __import__("requests").get(f"{base}/gpus", timeout=30, allow_redirects=False)
    assert anonymous.status_code in (302, 403) and "limits" not in anonymous.text
