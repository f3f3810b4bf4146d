"""A server as a Swarm service, and the node reporters' service, as tables: the same limits and
security defaults as one host's container, pinned to its GPUs' node, its home on the node or on
shared storage; and the hub config a Swarm site gets."""

import pytest

from gpuhub.config.schema import parse_settings
from gpuhub.engine.docker import docker_wiring
from gpuhub.policy import containers
from gpuhub.policy.containers import GpuAssignment
from gpuhub.policy.services import Mount, reporter_spec, service_parts, shared_home, task_address
from gpuhub.policy.sessions import Session
from gpuhub.policy.slugs import user_slug
from tests.conftest import BASE_SETTINGS

GiB = 1024**3
HOME = f"gpuhub-home-{user_slug('alice')}"
NODE = "abcdefghijklmnopqrstuvwxy"

TABLE = [
    # (what, profile, a GPU server?, node it is pinned to (its GPUs' or its home's), shared homes, constraints, home mount)
    ("GPU server: pinned to its GPUs' node, home volume", "cpu-small", True, NODE, "", (f"node.id=={NODE}",), Mount("/home/jovyan", HOME, "volume")),
    ("CPU server, home on a node: there", "cpu-small", False, "n2", "", ("node.id==n2",), Mount("/home/jovyan", HOME, "volume")),
    ("CPU server, shared homes: anywhere", "cpu-small", False, None, "/srv/nfs/homes", (), Mount("/home/jovyan", f"/srv/nfs/homes/{HOME}", "bind")),
    ("GPU server, shared homes: its GPUs' node", "cpu-small", True, NODE, "/srv/nfs/homes", (f"node.id=={NODE}",), Mount("/home/jovyan", f"/srv/nfs/homes/{HOME}", "bind")),
]


@pytest.mark.parametrize("what, profile, gpu, node, shared, constraints, home", TABLE, ids=[t[0] for t in TABLE])
def test_service_parts(what, profile, gpu, node, shared, constraints, home):
    settings = parse_settings(BASE_SETTINGS)
    wiring = docker_wiring(GpuAssignment(7, "exclusive", ("GPU-1",)), "default-runtime", True) if gpu else containers.CPU_ONLY
    spec = containers.build(settings, settings.profile(profile), "alice", devices=wiring)
    parts = service_parts(spec, node, shared)
    assert parts.constraints == constraints
    assert parts.mounts[0] == home
    shm = [m for m in parts.mounts if m.target == "/dev/shm"]
    assert shm == [Mount("/dev/shm", "", "tmpfs", False, spec.host_config["shm_size"])]
    # the security defaults of one host, carried over
    assert parts.container["user"] == "1000:1000" and parts.container["cap_drop"] == ["ALL"]
    # one host's limits: memory (also reserved: a node takes no more than it holds), CPUs, processes
    assert parts.resources == {
        "Limits": {"MemoryBytes": spec.mem_limit, "NanoCPUs": int(spec.cpu_limit * 1e9), "Pids": spec.host_config["pids_limit"]},
        "Reservations": {"MemoryBytes": spec.mem_limit},
    }
    assert spec.host_config["pids_limit"] > 0 and spec.mem_limit > 0 and spec.cpu_limit > 0
    assert (parts.restart_condition, parts.endpoint_mode) == ("none", "dnsrr")
    # the reconcile finds the service by its labels; a GPU server's name its allocation
    assert parts.labels["org.gpuhub.managed"] == "true"
    assert parts.labels.get("org.gpuhub.allocation") == ("7" if gpu else None)
    assert "device_requests" not in spec.host_config  # a service cannot carry them: the runtime reads the variables
    assert spec.environment["NVIDIA_VISIBLE_DEVICES"] == ("GPU-1" if gpu else "void")


def test_datasets_stay_read_only_binds():
    settings = parse_settings(BASE_SETTINGS)
    spec = containers.build(settings, settings.profile("cpu-data"), "alice")
    parts = service_parts(spec, None)
    data = [m for m in parts.mounts if m.target == "/datasets/imagenet"]
    assert data == [Mount("/datasets/imagenet", "imagenet-vol", "volume", True)]


@pytest.mark.parametrize(
    "who, shared, course, mode",
    [
        ("prof", "/srv/nfs/homes", "/srv/nfs/homes/gpuhub-course-ml101", "bind"),  # every node sees the one folder
        ("alice", "/srv/nfs/homes", "/srv/nfs/homes/gpuhub-course-ml101", "bind"),
        ("alice", "", "gpuhub-course-ml101", "volume"),  # homes on the nodes: a volume per node
    ],
)
def test_a_sessions_course_folder_is_on_shared_storage_beside_the_homes(who, shared, course, mode):
    settings = parse_settings(BASE_SETTINGS)
    session = Session("ml101", "cpu-small", (), shared_folder=True, instructors=("prof",))
    spec = containers.build(settings, settings.profile("cpu-small"), who, session=session)
    parts = service_parts(spec, None, shared)
    (mount,) = [m for m in parts.mounts if m.target == containers.COURSE_PATH]
    assert (mount.source, mount.type, mount.read_only) == (course, mode, who != "prof")  # students read it
    home = next(m.source for m in parts.mounts if m.target == "/home/jovyan")
    assert parts.shared_folders == ((home, course) if shared else ())  # made before the start


def test_shared_home_is_named_as_the_volume_would_be():
    assert shared_home("/srv/nfs/homes/", HOME) == f"/srv/nfs/homes/{HOME}"


@pytest.mark.parametrize(
    "inventory, activity, mounts",
    [
        ("auto", "nvml", ()),
        ("nvml", "nvml", ()),
        ("file:/srv/gpuhub/nodes/{node}.toml", "nvml", (Mount("/srv/gpuhub/nodes", "/srv/gpuhub/nodes", "bind", True),)),
        ("file:/srv/sim/{node}.toml", "file:/srv/sim/{node}-activity.json", (Mount("/srv/sim", "/srv/sim", "bind", True),)),
        ("nvml", "file:/srv/act/{node}.json", (Mount("/srv/act", "/srv/act", "bind", True),)),
    ],
)
def test_the_reporters_read_each_nodes_inventory_and_activity_and_see_every_gpu(inventory, activity, mounts):
    spec = reporter_spec(inventory, activity, 10, "reg:5000/gpuhub/pytorch-cuda:cpu", "http://hub:8081/hub/api", "gpuhub", 1000)
    assert spec.mounts == mounts
    assert spec.env["GPUHUB_INVENTORY"] == inventory and spec.env["GPUHUB_ACTIVITY"] == activity
    assert spec.env["GPUHUB_NODE_ID"] == "{{.Node.ID}}" and spec.env["GPUHUB_NODE_HOSTNAME"] == "{{.Node.Hostname}}"
    assert spec.env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert spec.user == "1000:1000" and spec.network == "gpuhub"
    assert spec.env["GPUHUB_REPORTER_TOKEN_FILE"] == "/run/secrets/" + spec.secret_target


def test_a_swarm_site_gets_the_swarm_spawner_and_the_reporters_token(tmp_path):
    from traitlets.config import Config

    from gpuhub.hub.hubconfig import apply_site_settings

    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "site.toml"
    path.write_text(f'[hub]\nstate_dir = "{state}"\n[engine]\nkind = "swarm"\n' + BASE_SETTINGS)
    c = Config()
    apply_site_settings(c, str(path))
    assert c.JupyterHub.spawner_class == "gpuhub-swarm"
    assert c.GPUSwarmSpawner.pull_policy == "skip"
    reporter = next(s for s in c.JupyterHub.services if s["name"] == "gpuhub-node-reporter")
    assert reporter["api_token"] == (state / "gpuhub-reporter-token").read_text().strip()
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "gpuhub-node-reporter")
    assert role["scopes"] == ["custom:gpuhub:report-nodes"] and role["services"] == ["gpuhub-node-reporter"]


def test_one_host_has_no_reporters(tmp_path):
    from traitlets.config import Config

    from gpuhub.hub.hubconfig import apply_site_settings

    path = tmp_path / "site.toml"
    path.write_text(BASE_SETTINGS)
    c = Config()
    apply_site_settings(c, str(path))
    assert c.JupyterHub.spawner_class == "gpuhub"
    assert all(s["name"] != "gpuhub-node-reporter" for s in c.JupyterHub.services)


def _task(*attachments):
    return {"NetworksAttachments": [{"Network": {"Spec": {"Name": name}}, "Addresses": addresses} for name, addresses in attachments]}


@pytest.mark.parametrize(
    "task, address",
    [
        (_task(("gpuhub", ["10.214.1.7/24"])), "10.214.1.7"),
        (_task(("ingress", ["10.0.0.5/24"]), ("gpuhub", ["10.214.1.9/24"])), "10.214.1.9"),
        (_task(("other", ["10.9.0.2/24"])), None),
        (_task(("gpuhub", [])), None),
        ({}, None),
        (None, None),
    ],
)
def test_the_hub_reaches_a_server_by_its_tasks_address_on_the_overlay(task, address):
    assert task_address(task, "gpuhub") == address
