"""The hub log: a refused start is one line at INFO (4xx) or WARNING (503) with the user, the status
and the reason, where JupyterHub logged it as two ERRORs with a traceback plus clean-up warnings; a
real fault keeps its traceback; JupyterHub's deprecation notices that are not the operator's to act on
are gone. The records are made the way JupyterHub makes them (``log.exception`` inside the except)."""

import io
import logging

import pytest

from gpuhub.hub.hubapi import api_url_of
from gpuhub.hub.log import QuietRefusals
from gpuhub.policy.errors import SpawnRefused


@pytest.fixture
def hub_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(QuietRefusals())
    logger = logging.getLogger("JupyterHub-test")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers = []


def as_jupyterhub_logs_a_failed_start(logger, error):
    try:
        raise error
    except Exception as e:
        logger.exception("Exception applying user_options for %s", "alice")  # jupyterhub/spawner.py
        logger.error(f"Error starting alice's server: {e}")  # jupyterhub/user.py
        logger.warning("Container not found: %s", "gpuhub-alice")  # DockerSpawner's clean-up
        logger.warning("%d %s: %s", 403, "POST /hub/api/users/alice/server", str(e))  # tornado
    logger.info("403 POST /hub/api/users/alice/server (alice@127.0.0.1) 30.1ms")  # the access log


@pytest.mark.parametrize(
    "status, why, level",
    [(400, "profile", "INFO"), (403, "quota", "INFO"), (409, "image-missing", "INFO"), (503, "capacity", "WARNING")],
)
def test_a_refusal_is_one_line(hub_log, status, why, level):
    logger, stream = hub_log
    refusal = SpawnRefused(status, "Over your quota: max_gpus = 1", why=why)
    refusal.holder = "alice"
    as_jupyterhub_logs_a_failed_start(logger, refusal)
    lines = stream.getvalue().splitlines()
    assert lines == [
        f"{level} gpuhub alice: start refused ({status} {why}): Over your quota: max_gpus = 1",
        "INFO 403 POST /hub/api/users/alice/server (alice@127.0.0.1) 30.1ms",
    ]


def test_a_real_fault_keeps_its_traceback(hub_log):
    logger, stream = hub_log
    as_jupyterhub_logs_a_failed_start(logger, RuntimeError("the engine went away"))
    text = stream.getvalue()
    assert "ERROR Exception applying user_options for alice\nTraceback" in text
    assert "RuntimeError: the engine went away" in text and "Container not found" in text


@pytest.mark.parametrize(
    "bind, api",
    [
        ("http://0.0.0.0:8081", "http://127.0.0.1:8081/hub/api"),
        ("http://172.17.0.1:40000", "http://172.17.0.1:40000/hub/api"),
        ("http://:8081", "http://127.0.0.1:8081/hub/api"),
        ("http://[::]:8081", "http://127.0.0.1:8081/hub/api"),
        ("https://hub.internal:9000/", "https://hub.internal:9000/hub/api"),
    ],
)
def test_the_hubs_own_api_url(bind, api):
    assert api_url_of(bind) == api
