"""SSH into one's own server, with the real OpenSSH client (``ssh``, ``sftp``, ``ssh -L``) against a
real hub process on loopback and servers on the real engine (simulated inventory): a registered key
gets a shell in its person's running server (uid 1000, their home, their ``NVIDIA_VISIBLE_DEVICES``,
the command's exit status); a password, another person's key, root and a forward off the server's
loopback are refused; a person without a running server is told so; sftp puts a file in the home;
``ssh -L`` reaches a port on the container's own loopback; the session counts as the server's
activity; every login and refusal is in the hub log."""

import re
import socket
from contextlib import contextmanager
import subprocess
import time
import urllib.request

import pytest

from tests.hubprocess import container_of, free_port, remove_prefixed, token_of
from tests.integration.test_admin import call
from tests.integration.test_gpu_allocation import env_of, make_hub, request_server, wait_until

PREFIX = "gpuhubtest-ssh"


@pytest.fixture(scope="module")
def ssh_hub(tmp_path_factory):
    remove_prefixed(PREFIX)
    port = free_port()
    hub = make_hub(tmp_path_factory.mktemp("ssh"), prefix=PREFIX)
    hub.more_settings += f'\n[ssh]\nport = {port}\nhost = "127.0.0.1"\n'
    hub.ssh_port = port
    hub.start()
    yield hub
    hub.stop()
    hub.remove_docker_objects()


@pytest.fixture(scope="module")
def keys(ssh_hub, tmp_path_factory):
    """alice's and bob's key files (ssh-keygen), each registered by its person through the REST API."""
    folder = tmp_path_factory.mktemp("keys")
    found = {}
    for user in ("alice", "bob"):
        path = folder / user
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user}@test", "-f", str(path)], check=True)
        r = call(ssh_hub, token_of(ssh_hub, user), "POST", f"users/{user}/ssh-keys", {"key": path.with_suffix(".pub").read_text()})
        assert r.status_code == 201, r.text
        found[user] = path
    return found


def ssh(hub, key, login, *args, options=(), tool="ssh", timeout=60):
    port_flag = "-P" if tool in ("sftp", "scp") else "-p"
    command = [
        tool, port_flag, str(hub.ssh_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", *options,
    ]
    if key is not None:
        command += ["-i", str(key)]
    return subprocess.run([*command, f"{login}@127.0.0.1", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def alice_server(ssh_hub, keys):
    request_server(ssh_hub, "alice", "gpu-1")
    ssh_hub.wait_ready("alice")
    return container_of(ssh_hub, "alice")


def test_a_key_opens_a_shell_in_its_persons_server_as_that_server(ssh_hub, keys, alice_server):
    r = ssh(ssh_hub, keys["alice"], "alice", 'id -u; echo "$HOME"; pwd; echo "$NVIDIA_VISIBLE_DEVICES"')
    assert r.returncode == 0, r.stderr
    uid, home, cwd, devices = r.stdout.split("\n")[:4]
    assert (uid, home, cwd) == ("1000", "/home/jovyan", "/home/jovyan")
    assert devices == env_of(alice_server)["NVIDIA_VISIBLE_DEVICES"] and devices.startswith("GPU-")
    assert ssh(ssh_hub, keys["alice"], "alice", "exit 7").returncode == 7  # the command's exit status
    tty = ssh(ssh_hub, keys["alice"], "alice", "tty", options=("-tt",))
    assert re.search(r"/dev/pts/\d+", tty.stdout), (tty.stdout, tty.stderr)


@pytest.mark.parametrize(
    "key_of, login, options",
    [
        ("bob", "alice", ()),  # another person's key
        ("alice", "root", ()),
        ("alice", "bob", ()),  # alice's key is not bob's
        (None, "alice", ("-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no")),
    ],
    ids=["other-persons-key", "root", "alice-key-as-bob", "password"],
)
def test_everything_but_the_persons_own_key_is_refused(ssh_hub, keys, alice_server, key_of, login, options):
    r = ssh(ssh_hub, keys[key_of] if key_of else None, login, "id", options=options)
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, (r.stdout, r.stderr)
    assert r.stdout == ""


def test_a_person_without_a_running_server_is_told_so(ssh_hub, keys):
    r = ssh(ssh_hub, keys["bob"], "bob", "id")
    assert r.returncode == 1 and "your server is not running" in r.stderr and r.stdout == "", r.stderr


def test_sftp_puts_a_file_in_the_home(ssh_hub, keys, alice_server, tmp_path):
    local = tmp_path / "data.txt"
    local.write_text("over sftp\n")
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} data.txt\nls -l data.txt\n")
    r = ssh(ssh_hub, keys["alice"], "alice", options=("-b", str(batch)), tool="sftp")
    assert r.returncode == 0, r.stderr
    out = alice_server.exec_run(["stat", "-c", "%u %n", "/home/jovyan/data.txt"]).output.decode().strip()
    assert out == "1000 /home/jovyan/data.txt"
    assert alice_server.exec_run(["cat", "/home/jovyan/data.txt"]).output == b"over sftp\n"


@contextmanager
def in_background(hub, key, *args):
    """``ssh`` with ``args`` left running (a tunnel, a long command); killed at the end."""
    client = subprocess.Popen(
        ["ssh", "-p", str(hub.ssh_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-i", str(key), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield client
    finally:
        client.kill()
        client.wait(10)


def test_a_forward_reaches_the_containers_own_loopback_and_nothing_else(ssh_hub, keys, alice_server):
    alice_server.exec_run(["python3", "-m", "http.server", "8765", "--bind", "127.0.0.1", "--directory", "/home/jovyan"], user="1000", detach=True)
    local, socks, other = free_port(), free_port(), free_port()

    def served():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).status == 200
        except OSError:
            return False

    with in_background(ssh_hub, keys["alice"], "-N", "-L", f"127.0.0.1:{local}:localhost:8765", "alice@127.0.0.1"):
        wait_until(served, timeout=30, what="the container's loopback server through ssh -L")
    # dynamic forwarding (a SOCKS proxy on the laptop, as VS Code's Remote-SSH uses) reaches it too
    with in_background(ssh_hub, keys["alice"], "-N", "-D", f"127.0.0.1:{socks}", "alice@127.0.0.1"):
        wait_until(lambda: _connects(socks), timeout=20, what="the SOCKS port")
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--socks5-hostname", f"127.0.0.1:{socks}", "http://localhost:8765/"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout == "200", (r.stdout, r.stderr)
    # a forward anywhere but the container's loopback is refused by the gateway (no address is tried)
    with in_background(ssh_hub, keys["alice"], "-N", "-L", f"127.0.0.1:{other}:hub.invalid:80", "alice@127.0.0.1"):
        wait_until(lambda: _connects(other), timeout=20, what="the second tunnel's local port")
        with socket.create_connection(("127.0.0.1", other), timeout=5) as s:
            s.settimeout(10)
            assert s.recv(100) == b""  # closed: the channel was refused
    log = ssh_hub.log_path.read_text()
    assert "gpuhub ssh alice:(default): forward to the server's 127.0.0.1:8765" in log
    assert "refused a forward to hub.invalid:80 (only the server's own loopback)" in log


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_a_session_is_the_servers_activity_and_the_log_tells_who_came(ssh_hub, keys, alice_server):
    before = ssh_hub.api("GET", "/users/alice", expect=200).json()["servers"][""]["last_activity"]
    time.sleep(1.5)
    assert ssh(ssh_hub, keys["alice"], "alice", "sleep 2").returncode == 0
    after = ssh_hub.api("GET", "/users/alice", expect=200).json()["servers"][""]["last_activity"]
    assert after > before, (before, after)
    log = ssh_hub.log_path.read_text()
    assert re.search(r"gpuhub ssh alice:\(default\): logged in from 127\.0\.0\.1:\d+ with key \d+ SHA256:", log)
    assert "gpuhub ssh alice: refused key" in log and "gpuhub ssh: refused 'root'" in log
    assert "gpuhub ssh bob:(default): refused command 'id': gpuhub: your server is not running" in log
    keys_now = call(ssh_hub, token_of(ssh_hub, "alice"), "GET", "users/alice/ssh-keys").json()
    assert keys_now["ssh"] == {"enabled": True, "port": ssh_hub.ssh_port, "user": "alice"} and keys_now["keys"][0]["last_used"]


def processes(container) -> str:
    return container.exec_run(["sh", "-c", 'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline"; echo; done']).output.decode()


@pytest.mark.parametrize("options", [("-tt",), ()], ids=["terminal", "command"])
def test_a_client_that_leaves_leaves_nothing_running(ssh_hub, keys, alice_server, options):
    command = "sleep 777" if options else "sleep 888"
    with in_background(ssh_hub, keys["alice"], *options, "alice@127.0.0.1", command):
        wait_until(lambda: command in processes(alice_server), timeout=30, what=f"{command} in the server")
    # the client was killed (the laptop's lid closed)
    wait_until(lambda: command not in processes(alice_server), timeout=30, what=f"{command} to end with its session")
    assert "/tmp/.gpuhub-ssh-" not in alice_server.exec_run(["ls", "-a", "/tmp"]).output.decode()
