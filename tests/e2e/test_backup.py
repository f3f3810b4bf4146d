"""Backup and restore (issue 18) as an operator does it, with the real scripts on the real engine:
a site with state (a user in a group with its quota, a classroom session, GPU-hours from a SIMULATED
GPU, files in a home), ``scripts/backup`` while a server runs (it is paused for its home's copy and
goes on), then everything removed as on a fresh machine (``docker-compose down -v``, the homes, the
state folder, the settings file; the images kept), ``scripts/restore`` and ``scripts/up``: the admin
logs in with the password the backup holds, and users, groups, quotas, sessions, GPU-hours, the
edge's certificate authority and every home file are as they were. Refused with nothing changed: a
restore while the hub runs, and a damaged archive.

Compose project ``gpuhubbk`` on its own port, network, state folder and names; removed at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.e2e.operator import Api, Operator, admin_token, said, start_server
from tests.hubprocess import REPO, require_engine_and_image

PREFIX = "gpuhubbk"


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    problem = require_engine_and_image()
    if problem:
        pytest.fail(f"the backup tests cannot run: {problem}", pytrace=False)
    op = Operator(tmp_path_factory.mktemp("backup"), prefix=PREFIX)
    op.env["GPUHUB_CONFIG_D"] = str(op.workdir / "config.d")
    (op.workdir / "config.d").mkdir()
    (op.workdir / "config.d" / "site.py").write_text("c.JupyterHub.allow_named_servers = True  # a site's drop-in\n")
    op.clean()
    try:
        yield op
    finally:
        op.clean()


def site_state(api: Api) -> dict:
    """What a restore must bring back, as the hub's APIs show it."""
    users = {u["name"]: (u["admin"], sorted(u["groups"])) for u in api("GET", "/hub/api/users").json()}
    groups = {g["name"]: sorted(g["users"]) for g in api("GET", "/hub/api/groups").json()}
    quotas = api("GET", "/hub/api/gpuhub/v1/quotas").json()
    session = api("GET", "/hub/api/gpuhub/v1/sessions/ml101").json()
    since = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    until = (datetime.now(timezone.utc) + timedelta(days=2)).strftime("%Y-%m-%d")
    usage = api("GET", f"/hub/api/gpuhub/v1/usage?since={since}&until={until}&format=csv&records=true").text
    live = ("open_now", "next_start", "roster")
    return {"users": users, "groups": groups, "quotas": quotas, "session": {k: v for k, v in session.items() if k not in live}, "usage": usage}


def test_a_backup_restores_a_site_on_a_fresh_machine(operator):
    op = operator
    up = op.script("scripts/up", "--demo")
    assert up.returncode == 0, said(up) + op.logs()
    api = Api(op, admin_token(op))
    ca_before = Path(op.ca).read_text()

    # --- a site's state
    api("POST", "/hub/api/users/ana", ok=(201,))
    api("POST", "/hub/api/groups/ml-lab", ok=(201,))
    api("POST", "/hub/api/groups/ml-lab/users", json={"users": ["ana"]})
    api("PUT", "/hub/api/gpuhub/v1/quotas/group/ml-lab", json={"max_gpus": 1, "gpu_hours_per_week": 12})
    api("PUT", "/hub/api/gpuhub/v1/sessions/ml101", json={
        "profile": "cpu-small", "title": "ML 101", "windows": [{"start": "2027-01-11T09:00Z", "end": "2027-01-11T11:00Z"}]})
    api("POST", "/hub/api/gpuhub/v1/sessions/ml101/roster", data=b"username,name\nana,Ana\n", headers={"Content-Type": "text/csv"})
    start_server(op, api.token, "gpu-1")  # a SIMULATED GPU: GPU-hours recorded
    api.stop_server()
    start_server(op, api.token, "cpu-small")  # runs through the backup
    note = "written before the backup\n" * 1000
    api("PUT", "/user/admin/api/contents/note.txt", json={"type": "file", "format": "text", "content": note}, ok=(200, 201))
    before = site_state(api)
    assert before["users"]["ana"] == (False, ["ml-lab", "ml101"]) and "admin" in before["usage"]

    # --- the backup, while admin's server runs
    backup = op.script("scripts/backup")
    assert backup.returncode == 0, said(backup) + op.logs()
    archives = sorted((op.workdir / "backups").glob("gpuhub-backup-*.tar"))
    assert len(archives) == 1 and str(archives[0]) in backup.stderr, said(backup)
    archive = archives[0]
    assert "paused" in backup.stdout + backup.stderr
    print(backup.stderr)  # what it copied, how long each server was paused (docs/reliability.md)
    assert op.user_container("admin").status == "running"  # paused for the copy, then went on
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[-1] == "manifest.json"
    assert {"hub/jupyterhub.sqlite", "site/settings.toml", "site/jupyterhub_config.d/site.py", "hub/data/jupyterhub_cookie_secret"} <= set(names)
    assert {n for n in names if n.startswith("volumes/")} >= {f"volumes/{PREFIX}_edge-data.tar"}
    assert any(n.startswith(f"volumes/{PREFIX}-home-admin") for n in names)

    # --- refused while the hub runs: nothing changed
    refused = op.script("scripts/restore", str(archive))
    assert refused.returncode != 0 and "the hub runs" in refused.stderr, said(refused)

    # --- a fresh machine: nothing of the site is left but the archive (and the images)
    op.clean()
    shutil.rmtree(op.workdir / "state")
    settings_text = (op.workdir / "settings.toml").read_text()
    (op.workdir / "settings.toml").unlink()
    shutil.rmtree(op.workdir / "config.d")
    assert not op.volumes()

    damaged = op.workdir / "damaged.tar"
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        home = next(m for m in tar.getmembers() if m.name.startswith(f"volumes/{PREFIX}-home-admin"))
    data[home.offset_data + 600] ^= 0xFF
    damaged.write_bytes(bytes(data))
    refused = op.script("scripts/restore", str(damaged))
    assert refused.returncode != 0 and f"{home.name} does not match its checksum" in refused.stderr, said(refused)
    assert not any(v.startswith(f"{PREFIX}-home") for v in op.volumes())
    assert not (op.workdir / "settings.toml").exists()

    restored = op.script("scripts/restore", str(archive))
    assert restored.returncode == 0, said(restored)
    assert (op.workdir / "settings.toml").read_text() == settings_text
    assert (op.workdir / "config.d" / "site.py").exists()

    # --- the site again, with the password the backup holds (not the one in the environment now)
    op.env["GPUHUB_ADMIN_PASSWORD"] = "not-the-restored-one"
    up = op.script("scripts/up", "--demo")
    assert up.returncode == 0, said(up) + op.logs()
    assert Path(op.ca).read_text() == ca_before  # the edge's local CA came back: browsers that trusted it still do
    api = Api(op, admin_token(op))
    after = site_state(api)
    assert after == before
    start_server(op, api.token, "cpu-small")
    r = api("GET", "/user/admin/api/contents/note.txt?content=1&type=file&format=text")
    assert r.json()["content"] == note
    owner = subprocess.run(["docker", "exec", op.user_container("admin").id, "stat", "-c", "%u", "/home/jovyan/note.txt"],
                           capture_output=True, text=True, cwd=REPO)
    assert owner.stdout.strip() == "1000", owner
