"""Integration tier: a real JupyterHub process (the repository's config) spawning real containers.

Fixtures:
- ``hub`` (session): a running ``HubProcess`` with a service token; its containers and volumes
  (prefix ``gpuhubtest-``) are removed before and after the session.
- ``user`` (function): a fresh hub user with no server; its server is stopped afterwards.
A failing test prints the hub log tail and every test container's log.
"""

import itertools
import os

import pytest

from tests.hubprocess import HubProcess, fresh_engine_or_fail

PREFIX = "gpuhubtest"
_names = itertools.count()


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)




@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    fresh_engine_or_fail("Docker", PREFIX)
    h = HubProcess(tmp_path_factory.mktemp("hub"), prefix=PREFIX)
    h.start()
    yield h
    h.stop()
    h.remove_docker_objects()
    leftovers = [c.name for c in h.containers()] + [v.name for v in h.volumes()]
    assert not leftovers, f"test containers or volumes left behind: {leftovers}"


@pytest.fixture
def user(hub, request):
    name = f"user{os.getpid()}-{next(_names)}"
    hub.create_user(name)
    yield name
    failed = getattr(request.node, "rep_call", None) and request.node.rep_call.failed
    if failed:
        print(f"\n===== hub log =====\n{hub.log_tail()}\n===== containers =====\n{hub.container_logs()}")
    hub.api("DELETE", f"/users/{name}/server")
