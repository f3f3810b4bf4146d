"""Swarm tier: a real multi-node Docker Swarm on this machine (``tests/swarm/cluster.py``). Needs root.

Fixtures:
- ``swarm_cluster`` (package: torn down after the last swarm test): a running ``Cluster``: a manager and two workers (each its own network
  namespace, containerd and dockerd), a registry on the manager (10.213.0.10:5000), the attachable
  overlay ``gpuhub``, gpuhub/debian-base pushed and pulled on every worker. Built once and torn down
  at the end, also after failures; a crashed run's leftovers are removed first, and the session
  fails if anything of the cluster is left after the teardown.
- ``base_image`` (package): the registry reference of gpuhub/debian-base (on every node).
- ``user_image`` (package, on first use): gpuhub/pytorch-cuda:cpu pushed and pulled on every worker.
- ``hub_image`` (package, on first use): gpuhub/hub:latest loaded into the manager's engine.
  When the session's tests use them, the push and the load start in the background as soon as the
  cluster is up (``Cluster.stage``), while the cluster's own tests run.
- ``swarm_hub`` (package, on first use): docker-compose.yml's hub on the manager, a Swarm hub with
  SIMULATED node inventories (``tests/swarm/swarmhub.py``), removed after the last swarm test.
- ``services`` (function): ``services.create(image, command, name, **kwargs)`` creates a swarm
  service (docker-py, endpoint mode dnsrr, 1 s stop grace) and removes it, and waits for its
  containers to go, after the test.
A failing test prints every node's log tail. The terminal summary lists the cluster's timings and
the facts the tests recorded (``swarm_cluster.notes``).
"""

import docker
import pytest

from tests.swarm.cluster import Cluster, ClusterError
from tests.swarm.swarmhub import compose_hub

_clusters: list[Cluster] = []


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/swarm/" in str(item.fspath):
            item.add_marker(pytest.mark.swarm)


def pytest_terminal_summary(terminalreporter):
    for cluster in _clusters:
        terminalreporter.write_sep("-", "swarm cluster timings (s)")
        for key, value in cluster.timings.items():
            terminalreporter.write_line(f"{key}: {value}")
        if cluster.stale:
            terminalreporter.write_line(f"removed leftovers of an earlier run: {cluster.stale}")
        if cluster.notes:
            terminalreporter.write_sep("-", "swarm facts recorded")
            for note in cluster.notes:
                terminalreporter.write_line(note)


USER_IMAGE, HUB_IMAGE = "gpuhub/pytorch-cuda:cpu", "gpuhub/hub:latest"


@pytest.fixture(scope="package")
def swarm_cluster(request):
    try:
        cluster = Cluster.start(workers=2)
    except ClusterError as exc:
        pytest.fail(f"the swarm test cluster did not start: {exc}", pytrace=False)
    _clusters.append(cluster)
    # the hub's images, started now in the background when a test will need them (the cluster's own
    # tests run meanwhile; the push ends before a test stops the registry)
    needed = {name for item in request.session.items for name in item.fixturenames}
    cluster.stage(push=(USER_IMAGE,) if "user_image" in needed else (), load=(HUB_IMAGE,) if "hub_image" in needed else ())
    try:
        yield cluster
    finally:
        left = cluster.stop()
    assert not left, f"the swarm test cluster left things behind: {left}"


@pytest.fixture(scope="package")
def base_image(swarm_cluster):
    return swarm_cluster.push("gpuhub/debian-base:bookworm")  # done in setup: returns the reference


@pytest.fixture(scope="package")
def user_image(swarm_cluster):
    ref = swarm_cluster.push(USER_IMAGE)
    swarm_cluster.pull(ref)
    return ref


@pytest.fixture(scope="package")
def hub_image(swarm_cluster):
    swarm_cluster.load(HUB_IMAGE)
    return HUB_IMAGE


@pytest.fixture(scope="package")
def swarm_hub(swarm_cluster, user_image, hub_image):
    with compose_hub(swarm_cluster, user_image) as hub:
        yield hub


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request):
    yield
    if "swarm_cluster" not in request.fixturenames:
        return
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n===== swarm node logs =====\n{request.getfixturevalue('swarm_cluster').logs_tail(40)}")


class Services:
    """Swarm services a test creates (docker-py on the manager), removed after the test."""

    def __init__(self, cluster: Cluster, test_name: str):
        self.cluster = cluster
        self.prefix = "t-" + "".join(c if c.isalnum() else "-" for c in test_name.removeprefix("test_"))[:30]
        self.created: list = []

    def create(self, image: str, command: list[str], name: str, **kwargs):
        kwargs.setdefault("endpoint_spec", docker.types.EndpointSpec(mode="dnsrr"))
        kwargs.setdefault("stop_grace_period", 1_000_000_000)
        service = self.cluster.manager.client().services.create(
            image, command, name=f"{self.prefix}-{name}", **kwargs)
        self.created.append(service)
        return service

    def remove_all(self) -> None:
        names = [s.name for s in self.created]
        for service in self.created:
            try:
                service.remove()
            except docker.errors.NotFound:
                pass
        self.created = []

        def containers_gone():
            for node in self.cluster.nodes:
                if not node.engine_running():
                    continue
                for name in names:
                    filters = {"label": f"com.docker.swarm.service.name={name}"}
                    if node.client().containers.list(all=True, filters=filters):
                        return False
            return True

        if names:
            self.cluster.wait_for(containers_gone, 60, f"the containers of {names} to go")


@pytest.fixture
def services(swarm_cluster, request):
    s = Services(swarm_cluster, request.node.name)
    yield s
    s.remove_all()

