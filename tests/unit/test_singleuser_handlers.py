"""The server extension's handlers through a real Jupyter server (pytest-jupyter's ``jp_fetch``):
authentication required, the no-GPU state, the container limits, and the environment check run and
kept. (The tests are plain functions driving pytest-jupyter's own loop, on which its server runs:
pytest-asyncio would run them on another loop.)"""

import json

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"gpuhub.singleuser": True}}}


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop, monkeypatch):
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "void")  # a CPU-only server

    def call(*parts, **kwargs):
        return jp_asyncio_loop.run_until_complete(jp_fetch("gpuhub", "api", "v1", *parts, **kwargs))

    return call


def test_gpus_without_a_gpu_is_an_explicit_state(fetch):
    r = fetch("gpus")
    body = json.loads(r.body)
    assert r.code == 200
    assert body["state"] == "no-gpu" and body["gpus"] == [] and body["message"] == "no GPU assigned to this server"
    assert set(body["limits"]) == {"cgroup", "memory_limit", "memory_used", "cpu_limit"}


@pytest.mark.parametrize("method, path", [("GET", "gpus"), ("GET", "envcheck"), ("POST", "envcheck")])
def test_authentication_is_required(fetch, method, path):
    with pytest.raises(HTTPClientError) as e:
        fetch(path, method=method, body=b"" if method == "POST" else None, headers={"Authorization": "token not-the-token"})
    assert e.value.code == 403


def test_envcheck_runs_and_the_last_report_is_kept(fetch):
    with pytest.raises(HTTPClientError) as e:
        fetch("envcheck")
    assert e.value.code == 404  # nothing run yet
    report = json.loads(fetch("envcheck", method="POST", body=b"").body)
    assert report["schema"] == 1
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["matmul"]["status"] == "skip" and "no GPU assigned" in checks["matmul"]["hint"]
    assert json.loads(fetch("envcheck").body) == report
