"""Smoke tests of the Swarm facts the product relies on, on a real multi-node Swarm (cluster.py).

Each test leaves the cluster as it found it (nodes active and Ready, registry up, its services gone).
Measured times and the exact texts Swarm shows are recorded in ``swarm_cluster.notes`` (printed in the
terminal summary; written up in docs/swarm-test-facts.md).
"""

import time

import docker
import pytest

from tests.swarm.cluster import NODE_LABEL, OVERLAY, REGISTRY

pytestmark = pytest.mark.swarm

MiB = 1024 * 1024
TOKEN = "gpuhub-swarm-smoke"
# A one-line TCP service in perl (debian-base has perl-base, no python3): reads a line, answers
# "pong TOKEN HOSTNAME", closes.
SERVER = r"""
use IO::Socket::INET;
open(my $h, "<", "/etc/hostname"); my $name = <$h>; chomp $name;
my $s = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => 8080, Listen => 16, ReuseAddr => 1)
  or die "listen: $!";
$| = 1; print "listening\n";
while (my $c = $s->accept) { my $line = <$c>; print $c "pong $ENV{TOKEN} $name\n"; close $c; }
"""
# Asks each target (name or address) in turn, retrying for a while (gossip and DNS settle).
CLIENT = r"""
for target in "$@"; do
  for i in $(seq 60); do
    reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/8080" && echo ping >&3 && head -n1 <&3' "$target" 2>/dev/null)
    if [ -n "$reply" ]; then echo "$target -> $reply"; continue 2; fi
    sleep 0.5
  done
  echo "$target unreachable"; exit 1
done
echo "resolve web: $(getent ahostsv4 web | awk '{print $1}' | sort -u | tr '\n' ' ')"
"""


def overlay_ip(task: dict) -> str:
    for attachment in task.get("NetworksAttachments", []):
        if attachment["Network"]["Spec"]["Name"] == OVERLAY:
            return attachment["Addresses"][0].split("/")[0]
    raise AssertionError(f"task {task['ID']} has no address on {OVERLAY}: {task.get('NetworksAttachments')}")


def task_container(node, task: dict):
    found = node.client().containers.list(filters={"label": f"com.docker.swarm.task.id={task['ID']}"})
    assert len(found) == 1, f"{node.name} runs {len(found)} containers of task {task['ID']}"
    return found[0]


@pytest.fixture(scope="module")
def web(swarm_cluster, base_image):
    """The perl service on worker1, dnsrr on the overlay, with the product's container constraints."""
    w1 = swarm_cluster.node("worker1")
    client = swarm_cluster.manager.client()
    service = client.services.create(
        base_image, ["perl", "-e", SERVER], name="web",
        env=["NVIDIA_VISIBLE_DEVICES=GPU-x", f"TOKEN={TOKEN}"],
        networks=[OVERLAY],
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        constraints=[f"node.id=={w1.node_id}"],
        resources=docker.types.Resources(mem_limit=256 * MiB, cpu_limit=500_000_000),
        mounts=[docker.types.Mount(target="/dev/shm", source=None, type="tmpfs", tmpfs_size=64 * MiB)],
        user="1000", cap_drop=["ALL"], stop_grace_period=1_000_000_000,
    )
    try:
        task = swarm_cluster.running_task(service.name, w1, timeout=60)
        swarm_cluster.timings["service_create_to_running[web]"] = task["_waited_s"]
        yield service.name, task
    finally:
        service.remove()


def test_nodes_ready_with_roles_and_labels(swarm_cluster, base_image):
    nodes = {n["Description"]["Hostname"]: n for n in swarm_cluster.swarm_nodes()}
    assert sorted(nodes) == ["manager", "worker1", "worker2"]
    for node in swarm_cluster.nodes:
        seen = nodes[node.name]
        assert seen["ID"] == node.node_id
        assert seen["Status"]["State"] == "ready", seen["Status"]
        assert seen["Status"]["Addr"] == node.address
        assert seen["Spec"]["Availability"] == "active"
        assert seen["Spec"]["Role"] == node.role
        assert seen["Spec"]["Labels"] == {NODE_LABEL: node.name}
        info = node.client().info()
        assert info["Swarm"]["NodeAddr"] == node.address
        assert info["RegistryConfig"]["IndexConfigs"][REGISTRY]["Secure"] is False
        assert node.docker("image", "inspect", base_image, check=False).returncode == 0, f"{base_image} not on {node.name}"
    assert nodes["manager"]["ManagerStatus"]["Leader"] is True
    assert all("ManagerStatus" not in nodes[w.name] for w in swarm_cluster.workers)

    networks = {n.name: n.attrs for n in swarm_cluster.manager.client().networks.list()}
    assert networks[OVERLAY]["Driver"] == "overlay" and networks[OVERLAY]["Attachable"] is True
    assert "ingress" not in networks  # removed: no IPVS here, nothing may publish through the mesh
    assert "gpuhub/debian-base" in swarm_cluster.registry_catalog()
    for node in swarm_cluster.nodes:  # removed before the workers joined: no node tried to set it up
        errors = [line for line in (node.dir / "dockerd.log").read_text().splitlines()
                  if "level=error" in line and "ingress" in line]
        assert not errors, f"{node.name}: {errors}"


def test_service_task_on_worker1_with_limits(swarm_cluster, web):
    name, task = web
    w1 = swarm_cluster.node("worker1")
    assert task["NodeID"] == w1.node_id
    container = task_container(w1, task)  # on worker1's OWN engine
    for other in swarm_cluster.nodes:
        if other is not w1:
            assert not other.client().containers.list(filters={"label": f"com.docker.swarm.service.name={name}"})

    attrs = container.attrs
    host = attrs["HostConfig"]
    assert host["Memory"] == 256 * MiB
    assert host["NanoCpus"] == 500_000_000
    assert host["CapDrop"] == ["ALL"]
    assert attrs["Config"]["User"] == "1000"
    assert "NVIDIA_VISIBLE_DEVICES=GPU-x" in attrs["Config"]["Env"]
    shm = [m for m in host["Mounts"] if m["Target"] == "/dev/shm"]
    assert shm and shm[0]["Type"] == "tmpfs" and shm[0]["TmpfsOptions"]["SizeBytes"] == 64 * MiB, host["Mounts"]
    with open(f"/proc/{attrs['State']['Pid']}/cgroup") as f:  # the node's daemon-wide cgroup parent
        assert f"memory:{w1.cgroup_parent}/{container.id}" in f.read()

    code, out = container.exec_run(["cat", "/proc/1/status"])
    status = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    assert code == 0
    assert status["NoNewPrivs"].strip() == "1", "the daemon-wide --no-new-privileges did not reach the task"
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["Uid"].split()[0] == "1000"
    code, out = container.exec_run(["sh", "-c", "grep ' /dev/shm ' /proc/mounts"])
    assert code == 0 and "size=65536k" in out.decode(), out.decode()
    swarm_cluster.notes.append(f"task container on worker1: NoNewPrivs 1, CapEff 0, uid 1000, /dev/shm: {out.decode().strip()}")


def test_manager_container_reaches_service_by_name_and_ip(swarm_cluster, web, base_image):
    name, task = web
    ip = overlay_ip(task)
    t0 = time.monotonic()
    result = swarm_cluster.manager.docker(
        "run", "--rm", "--network", OVERLAY, base_image, "bash", "-c", CLIENT, "_", name, ip, timeout=120, check=False)
    swarm_cluster.timings["overlay_reach_from_manager"] = round(time.monotonic() - t0, 2)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{name} -> pong {TOKEN}") for line in lines), result.stdout
    assert any(line.startswith(f"{ip} -> pong {TOKEN}") for line in lines), result.stdout
    assert f"resolve web: {ip} " in result.stdout, result.stdout  # dnsrr: the name is the task's own address
    swarm_cluster.notes.append(f"overlay from a manager container: {' | '.join(lines)}")


def test_lost_worker_goes_down_and_comes_back(swarm_cluster, base_image):
    w2 = swarm_cluster.node("worker2")
    spec = swarm_cluster.manager.client().swarm.attrs["Spec"]
    heartbeat = spec["Dispatcher"]["HeartbeatPeriod"] / 1e9
    t0 = time.monotonic()
    w2.kill_engine()
    try:
        swarm_cluster.wait_for(lambda: swarm_cluster.node_state("worker2") == "down", 90, "worker2 reported down")
        down_after = round(time.monotonic() - t0, 2)
        message = w2.swarm_state()["Status"].get("Message")
    finally:
        t1 = time.monotonic()
        w2.start_engine()
    swarm_cluster.wait_for(lambda: swarm_cluster.node_state("worker2") == "ready", 90, "worker2 Ready again")
    back_after = round(time.monotonic() - t1, 2)
    swarm_cluster.timings[f"node_down_detected[heartbeat {heartbeat:g}s]"] = down_after
    swarm_cluster.timings["node_ready_after_engine_start"] = back_after
    swarm_cluster.notes.append(f"lost worker: Down after {down_after} s (heartbeat {heartbeat:g} s), "
                               f"Status.Message {message!r}; Ready {back_after} s after its engine started")
    assert down_after < 60
    assert w2.docker("image", "inspect", base_image, check=False).returncode == 0  # its images survive


def test_registry_down_then_pull_on_demand(swarm_cluster, services):
    w2 = swarm_cluster.node("worker2")
    ref = swarm_cluster.push("gpuhub/debian-base:bookworm", name="gpuhub/ondemand:1")
    assert w2.docker("image", "inspect", ref, check=False).returncode != 0, "worker2 should lack the image"
    swarm_cluster.registry_stop()
    try:
        assert not swarm_cluster.registry_up()
        service = services.create(ref, ["sleep", "infinity"], "ondemand", constraints=[f"node.id=={w2.node_id}"])
        failed = swarm_cluster.wait_task(
            service.name, lambda t: t["Status"].get("Err") and t["Status"]["State"] in ("rejected", "failed"),
            60, "a task that failed for want of the image")
    finally:
        swarm_cluster.registry_start()
    status = failed["Status"]
    swarm_cluster.notes.append(f"registry down, image missing on worker2: task State {status['State']!r}, "
                               f"Err {status['Err']!r}, Message {status.get('Message')!r} "
                               f"(after {failed['_waited_s']} s)")
    assert failed["NodeID"] == w2.node_id
    assert ref in status["Err"]
    running = swarm_cluster.running_task(service.name, w2, timeout=90)  # swarm retries; pulls on demand now
    swarm_cluster.timings["registry_back_to_task_running"] = running["_waited_s"]
    assert w2.docker("image", "inspect", ref, check=False).returncode == 0


def test_drain_moves_tasks_and_blocks_pinned_ones(swarm_cluster, services, base_image):
    manager, w1, w2 = swarm_cluster.manager, swarm_cluster.node("worker1"), swarm_cluster.node("worker2")
    pinned = services.create(base_image, ["sleep", "infinity"], "pinned", constraints=[f"node.id=={w1.node_id}"])
    free = services.create(base_image, ["sleep", "infinity"], "free", constraints=["node.role==worker"],
                           mode=docker.types.ServiceMode("replicated", replicas=2))
    first = swarm_cluster.running_task(pinned.name, w1)
    swarm_cluster.wait_for(lambda: len(running_nodes(swarm_cluster, free.name)) == 2, 60, "2 running tasks of free")
    before = running_nodes(swarm_cluster, free.name)
    manager.docker("node", "update", "--availability", "drain", w1.node_id)
    try:
        moved = swarm_cluster.wait_task(
            pinned.name, lambda t: t["ID"] != first["ID"] and t["Status"].get("Err"), 60, "the pinned task pending")
        swarm_cluster.wait_for(lambda: sorted(running_nodes(swarm_cluster, free.name)) == [w2.node_id] * 2, 60,
                               "both tasks of free running on worker2")
        swarm_cluster.wait_for(lambda: not w1.client().containers.list(), 60, "worker1 emptied")
        new = services.create(base_image, ["sleep", "infinity"], "new", constraints=[f"node.id=={w1.node_id}"])
        blocked = swarm_cluster.wait_task(new.name, lambda t: t["Status"].get("Err"), 60, "the new task pending")
        time.sleep(2)
        assert not any(t["Status"]["State"] == "running" for t in swarm_cluster.tasks(new.name))
    finally:
        manager.docker("node", "update", "--availability", "active", w1.node_id)
    for label, task in (("pinned task after drain", moved), ("new service pinned to a drained node", blocked)):
        swarm_cluster.notes.append(f"{label}: State {task['Status']['State']!r}, "
                                   f"Err {task['Status']['Err']!r}, Message {task['Status'].get('Message')!r}")
        assert task["Status"]["State"] == "pending"
        assert task["Status"]["Err"].startswith("no suitable node")
    assert w1.node_id in before, f"free's tasks were not spread over the workers: {before}"
    swarm_cluster.running_task(pinned.name, w1, timeout=60)
    swarm_cluster.running_task(new.name, w1, timeout=60)


def running_nodes(cluster, service: str) -> list[str]:
    return [t["NodeID"] for t in cluster.tasks(service)
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]
