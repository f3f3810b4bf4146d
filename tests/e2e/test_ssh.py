"""SSH into one's server on the composed platform, as a person does it: the key added on the home
page in Chromium, then the real OpenSSH client on the hub's published port (``GPUHUB_SSH_PORT``):
a shell in the running server as uid 1000, a file through sftp; the key removed on the page, and the
same client is refused."""

import re
import subprocess
import time

from tests.e2e.conftest import ARTIFACTS, REPO
from tests.e2e.test_admin_page import hub_api, stop_own_server
from tests.e2e.test_browser import log_in


def ssh(platform, key, *args, tool="ssh"):
    port = platform.env["GPUHUB_SSH_PORT"]
    options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "IdentitiesOnly=yes", "-i", str(key)]
    return subprocess.run([tool, "-P" if tool == "sftp" else "-p", port, *options, *args], capture_output=True, text=True, timeout=60)


def test_a_key_added_on_the_home_page_opens_a_shell_in_the_running_server(page, platform, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@e2e", "-f", str(key)], check=True)
    log_in(page, platform)
    page.wait_for_url(re.compile(r"/hub/|/user/"), timeout=60_000)
    stop_own_server(page, platform)
    page.goto(f"{platform.url}/hub/home")
    page.wait_for_selector("#gpuhub-ssh:not(.d-none)", timeout=30_000)
    assert page.locator("#gpuhub-ssh-command").inner_text() == f"ssh -p {platform.env['GPUHUB_SSH_PORT']} admin@localhost"  # [ssh] public_port
    page.fill("#gpuhub-ssh-key", key.with_suffix(".pub").read_text().strip())
    page.get_by_role("button", name="Add key").click()
    page.wait_for_selector("#gpuhub-ok:has-text('Key added: SHA256:')")
    assert "admin@e2e" in page.locator("#gpuhub-ssh-keys tbody").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ssh-keys.png"), full_page=True)

    refused = ssh(platform, key, "admin@127.0.0.1", "id -u")  # no server running yet
    assert refused.returncode == 1 and "your server is not running" in refused.stderr, refused.stderr
    hub_api(page, platform, "POST", "/users/admin/server", data={"profile": "cpu-small"})
    deadline = time.monotonic() + 120
    while not (hub_api(page, platform, "GET", "/users/admin").json()["servers"].get("") or {}).get("ready"):
        assert time.monotonic() < deadline, "the admin's server did not start"
        time.sleep(1)
    shell = ssh(platform, key, "admin@127.0.0.1", 'id -u; echo "$HOME"; echo "$NVIDIA_VISIBLE_DEVICES"')
    assert shell.returncode == 0 and shell.stdout.split("\n")[:3] == ["1000", "/home/jovyan", "void"], (shell.stdout, shell.stderr)
    local = tmp_path / "notes.txt"
    local.write_text("from my laptop\n")
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} notes.txt\n")
    assert ssh(platform, key, "-b", str(batch), "admin@127.0.0.1", tool="sftp").returncode == 0
    assert ssh(platform, key, "admin@127.0.0.1", "cat notes.txt").stdout == "from my laptop\n"

    page.goto(f"{platform.url}/hub/home")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#gpuhub-ssh-keys").get_by_role("button", name="Remove").click()
    page.wait_for_selector("#gpuhub-ssh-keys tr.gpuhub-empty")
    gone = ssh(platform, key, "admin@127.0.0.1", "id -u")
    assert gone.returncode == 255 and "Permission denied (publickey)" in gone.stderr
    hub_log = subprocess.run([*platform.compose, "logs", "--no-color", "hub"], cwd=REPO, env=platform.env, capture_output=True, text=True).stdout
    assert "gpuhub ssh admin:(default): logged in from" in hub_log and "gpuhub ssh admin: refused key" in hub_log
    stop_own_server(page, platform)
