"""HTTPS by default (issue 18): the composed platform's edge (Caddy, from docker-compose.yml) with the
settings' default ``[https]`` (a local CA): the certificate verified strictly against that CA, plain
HTTP redirected, HSTS where a browser keeps it, ``Secure`` cookies, and a kernel's websocket through
it in Chromium."""

import re
import socket
import ssl
import subprocess
import time

import pytest
import requests

from gpuhub.config.caddyfile import caddyfile
from gpuhub.config.schema import parse_settings
from tests.conftest import BASE_SETTINGS
from tests.e2e.test_browser import log_in
from tests.hubprocess import login
from tests.unit.test_https import make_pair


def test_the_certificate_verifies_against_the_local_ca_only(platform):
    port = int(platform.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=platform.ca)
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
            names = [value for _, value in tls.getpeercert()["subjectAltName"]]
            assert name in names and tls.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(requests.exceptions.SSLError):  # the system's CAs do not know the local CA
        requests.get(f"{platform.url}/hub/health", timeout=10)


def test_plain_http_is_redirected_to_https(platform):
    https_port = platform.url.rsplit(":", 1)[1]
    r = requests.get(f"{platform.http_url}/hub/login?next=%2Fhub%2Fhome", allow_redirects=False, timeout=10)
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://127.0.0.1:{https_port}/hub/login?next=%2Fhub%2Fhome"


def test_hsts_for_names_a_browser_keeps_it_for_and_secure_cookies(platform):
    session, r = login(platform, "admin", platform.admin_password)
    assert r.status_code == 302
    assert "Strict-Transport-Security" not in r.headers  # localhost: it would stick to every local port
    cookies = {c.name: c for c in session.cookies}
    assert cookies and all(c.secure for c in cookies.values()), {n: c.secure for n, c in cookies.items()}
    assert "jupyterhub-session-id" in cookies
    by_address = requests.get(platform.url.replace("localhost", "127.0.0.1") + "/hub/login", verify=platform.ca, timeout=10)
    assert by_address.headers["Strict-Transport-Security"] == "max-age=31536000"


def stop_admins_server(platform) -> None:
    session, r = login(platform, "admin", platform.admin_password)
    xsrf = {"X-XSRFToken": session.cookies.get("_xsrf", "")}
    session.delete(f"{platform.url}/hub/api/users/admin/server", headers=xsrf, timeout=60)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        user = session.get(f"{platform.url}/hub/api/users/admin", headers=xsrf, timeout=30).json()
        if not user["servers"]:
            return
        time.sleep(1)
    pytest.fail(f"admin's server did not stop: {user}")


def test_a_kernel_runs_over_the_https_websocket(page, platform):
    """JupyterLab's kernel channel is a websocket: wss:// through the edge and CHP to the server."""
    stop_admins_server(platform)
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    log_in(page, platform)
    page.goto(f"{platform.url}/hub/spawn")
    page.click("label[for=gpuhub-profile-cpu-small]")
    page.get_by_role("button", name=re.compile("^Start$", re.I)).click()
    page.wait_for_url(re.compile(r"/user/admin/lab"), timeout=150_000)
    assert page.url.startswith("https://localhost:")
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click(timeout=90_000)
    page.wait_for_selector("text=/Python 3 \\(ipykernel\\) \\| Idle/", timeout=90_000)  # its channel is open
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click(timeout=60_000)
    page.keyboard.type("print(6 * 7)")
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".jp-OutputArea-output >> text=42", timeout=90_000)
    assert any(url.startswith("wss://localhost:") and "/api/kernels/" in url for url in sockets), sockets
    stop_admins_server(platform)


@pytest.mark.parametrize("mode", ["local", "acme", "files", "off"])
def test_every_modes_caddyfile_is_valid_for_the_edges_caddy(tmp_path, mode):
    """Caddy in the hub image validates each mode's configuration as it would run it (``caddy adapt
    --validate``: certificates loaded, modules provisioned), without serving."""
    tables = {
        "local": 'names = ["gpu-lab", "10.0.0.5"]',
        "acme": 'mode = "acme"\ndomain = "gpu.example.edu"\nemail = "ops@example.edu"',
        "files": 'mode = "files"\ndomain = "gpu.example.edu"\ncertificate = "/etc/ssl/c.pem"\nkey = "/etc/ssl/k.pem"',
        "off": 'mode = "off"',
    }
    (tmp_path / "Caddyfile").write_text(caddyfile(parse_settings(BASE_SETTINGS + "\n[https]\n" + tables[mode]).https))
    mounts = ["-v", f"{tmp_path / 'Caddyfile'}:/etc/caddy/Caddyfile:ro"]
    if mode == "files":  # the copies edge.sh makes for the caddy user
        cert, key = make_pair(tmp_path)
        mounts += ["-v", f"{cert}:/srv/edge/tls/cert.pem:ro", "-v", f"{key}:/srv/edge/tls/key.pem:ro"]
    checked = subprocess.run(["docker", "run", "--rm", "--network", "none", "-e", "GPUHUB_HTTPS_PORT=443", *mounts,
                              "--entrypoint", "caddy", "gpuhub/hub:latest", "adapt", "--config", "/etc/caddy/Caddyfile",
                              "--adapter", "caddyfile", "--validate"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr[-2000:]
