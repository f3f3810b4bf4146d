"""Upgrading (issue 18) as docs/admin.md says, ``git pull && bash scripts/up``, from the previous
release: the commit before the real-site issue (JupyterHub 5.5, the hub serving plain HTTP itself, no
edge), unpacked from this clone's history, built as images by its own images/build.sh and started by
its own ``scripts/up --demo``. With a user in a group with a quota, GPU-hours recorded and the admin's
server running on a SIMULATED GPU (the previous release's user image), this tree's ``scripts/up
--demo`` replaces the hub: JupyterHub's and gpuhub's tables are migrated, the running server is the
same container (never restarted) holding the same allocation and answering through the new HTTPS
edge, the quota, the group and the usage records are as they were, the admin logs in with the same
password, and a new start gets the GPU once the old server stops.

The previous release's images are built under the usual tags, so this tree's images are tagged aside
first and put back after, whatever happens (and the previous release's images removed). Compose
project ``gpuhubup`` with its own port, network, state folder and names; removed at the end.
"""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest

from tests.e2e.operator import Api, Operator, admin_token, operator_settings, said, start_server
from tests.hubprocess import REPO, require_engine_and_image

PREVIOUS = "37d923e50a2cc64d756b822e9cbc15cda471c609"
PREVIOUS_RECORD_COLUMNS = (
    "record", "allocation", "user", "groups", "server", "profile", "device", "share", "start", "end", "gpu_seconds", "gpu_hours", "end_reason",
)  # the last commit before issue 18 (JupyterHub 5.5.4)
PREFIX = "gpuhubup"
IMAGES = ("gpuhub/hub:latest", "gpuhub/pytorch-cuda:cpu")


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory) -> Path:
    known = subprocess.run(["git", "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], cwd=REPO, capture_output=True)
    if known.returncode != 0:
        pytest.fail(f"the previous release {PREVIOUS[:7]} is not in this clone's history (a shallow clone?): git fetch --unshallow", pytrace=False)
    tree = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "archive", "--format=tar", PREVIOUS], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="tar")
    for kept in ("build/wheelhouse", "platform/jupyterlab-gpuhub/node_modules"):  # the same downloads: not again
        if (REPO / kept).is_dir():
            (tree / kept).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(REPO / kept), str(tree / kept)], check=True)
    return tree


def put_back(current: dict[str, str]) -> None:
    """This tree's images under their usual tags again (what ``git pull`` and a build would make)."""
    engine = docker.from_env()
    for ref, image_id in current.items():
        engine.images.get(image_id).tag(*ref.split(":"))


@pytest.fixture(scope="module")
def operator(tmp_path_factory, previous_tree):
    problem = require_engine_and_image()
    if problem:
        pytest.fail(f"the upgrade test cannot run: {problem}", pytrace=False)
    engine = docker.from_env()
    current = {ref: engine.images.get(ref).id for ref in IMAGES}
    aside = [f"gpuhub-current/{ref.split('/')[1].split(':')[0]}:upgrade-test" for ref in IMAGES]
    for ref, name in zip(IMAGES, aside):  # kept tagged: the previous release's build does not remove them
        engine.images.get(current[ref]).tag(*name.split(":"))
    op = Operator(tmp_path_factory.mktemp("upgrade"), prefix=PREFIX)
    op.current_images, op.previous_images = current, set()
    (op.workdir / "settings.toml").write_text(operator_settings(PREFIX, previous_tree))
    op.clean()
    try:
        yield op
    finally:
        op.clean()
        for ref in IMAGES:
            with contextlib.suppress(docker.errors.ImageNotFound):
                if engine.images.get(ref).id != current[ref]:
                    op.previous_images.add(engine.images.get(ref).id)
        put_back(current)
        for name in aside:
            engine.images.remove(name)
        for image_id in op.previous_images:
            subprocess.run(["docker", "rmi", image_id], capture_output=True)
        for ref in IMAGES:
            assert engine.images.get(ref).id == current[ref], f"{ref} was not put back"


def test_the_previous_release_upgrades_in_place_keeping_servers_and_records(operator, previous_tree):
    op = operator
    # --- the previous release, as its own scripts/up starts it (plain HTTP on GPUHUB_PORT)
    op.url, op.ca = f"http://127.0.0.1:{op.port}", True
    up = subprocess.run(["bash", "scripts/up", "--demo"], cwd=previous_tree, env=op.env, capture_output=True, text=True, timeout=1500)
    assert up.returncode == 0, said(up) + op.logs()
    engine = docker.from_env()
    assert "5.5." in engine.containers.get(op.hub_container().id).exec_run(["jupyterhub", "--version"]).output.decode()
    api = Api(op, admin_token(op))

    api("POST", "/hub/api/users/ana", ok=(201,))
    api("POST", "/hub/api/groups/ml-lab", ok=(201,))
    api("POST", "/hub/api/groups/ml-lab/users", json={"users": ["ana"]})
    api("PUT", "/hub/api/gpuhub/v1/quotas/group/ml-lab", json={"max_gpus": 1, "gpu_hours_per_week": 12})
    start_server(op, api.token, "gpu-1")
    api.stop_server()
    start_server(op, api.token, "gpu-1")  # runs through the upgrade
    server = op.user_container("admin")
    started_at = server.attrs["State"]["StartedAt"]

    def records() -> dict:
        gpus = api("GET", "/hub/api/gpuhub/v1/gpus").json()["devices"]
        return {
            "held": sorted((d["uuid"], h["user"], h["since"]) for d in gpus for h in d["holders"]),
            "quotas": api("GET", "/hub/api/gpuhub/v1/quotas").json(),
            "groups": {g["name"]: sorted(g["users"]) for g in api("GET", "/hub/api/groups").json()},
            # an open record's figures grow with the clock; the columns the previous release wrote
            # (this one adds busy_gpu_hours and readings, empty for records without readings)
            "closed_usage": [{k: row[k] for k in PREVIOUS_RECORD_COLUMNS} for row in csv.DictReader(io.StringIO(
                api("GET", "/hub/api/gpuhub/v1/usage?since=2026-01-01&format=csv&records=true").text)) if row["end"]],
        }

    before = records()
    assert before["held"] and before["held"][0][1] == "admin" and before["closed_usage"][0]["user"] == "admin"

    # --- this tree's scripts/up, on the same settings file, state folder and volumes (its images are
    # this tree's, built before the test: the build finds them up to date)
    op.previous_images.update(engine.images.get(ref).id for ref in IMAGES)
    put_back(op.current_images)
    op.url, op.ca = f"https://localhost:{op.https_port}", str(op.workdir / "state" / "local-ca.crt")
    old_hub = op.hub_container().id
    up = op.script("scripts/up", "--demo", timeout=1500)
    assert up.returncode == 0, said(up) + op.logs()
    assert op.hub_container().id != old_hub
    assert "6.1." in op.hub_container().exec_run(["jupyterhub", "--version"]).output.decode()
    hub_log = subprocess.run([*op.compose, "logs", "--no-color", "hub"], cwd=REPO, env=op.env, capture_output=True, text=True).stdout
    assert "gpuhub reconcile: kept allocation" in hub_log, hub_log[-3000:]
    server.reload()
    assert server.status == "running" and server.attrs["State"]["StartedAt"] == started_at  # never restarted
    api.token = admin_token(op)  # the same password, from the migrated database
    assert records() == before
    migrated = list(csv.DictReader(io.StringIO(api("GET", "/hub/api/gpuhub/v1/usage?since=2026-01-01&format=csv&records=true").text)))
    assert migrated and all(row["busy_gpu_hours"] == "" and row["readings"] == "" for row in migrated if row["end"])  # 0010: no readings then
    r = api("GET", "/user/admin/api/status")  # the old server (JupyterHub 5.5's singleuser) checks the token with the new hub
    assert r.status_code == 200
    # the GPU goes back when the old server stops, and a new start (this release's image) gets it
    api.stop_server()
    start_server(op, api.token, "gpu-1")
    assert op.user_container("admin").image.id == docker.from_env().images.get("gpuhub/pytorch-cuda:cpu").id
