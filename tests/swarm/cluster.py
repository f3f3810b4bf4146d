"""A real multi-node Docker Swarm on this one machine, for the swarm test tier.

Each node is a network namespace of its own with its own containerd and dockerd (own data root,
exec root, socket, pid file, cgroup parent, hostname); the namespaces hang off one test bridge. The
manager also runs a plain-HTTP registry (Debian's ``docker-registry``) that the workers pull from.
The host's own engine pushes images to that registry (through a relay on its loopback) and saves
images for ``load``; it never becomes a swarm member.

    cluster = Cluster.start(workers=2)        # builds everything; tears down again if a step fails
    ref = cluster.push("gpuhub/debian-base:bookworm")   # host engine -> 127.0.0.1 relay -> registry
    cluster.pull(ref)                          # on every worker, in parallel
    w1 = cluster.node("worker1")
    w1.docker("ps")                            # the docker CLI against worker1's own engine
    w1.client().containers.list()              # docker-py against it
    cluster.manager.client().services.create(ref, constraints=[f"node.id=={w1.node_id}"], ...)
    cluster.stop()                             # idempotent; leaves nothing behind

Layout (everything carries the prefix ``gpuhubsw`` so a crashed run's leftovers are found and
removed at the start of the next one, see ``cleanup``):

- bridge ``gpuhubsw0`` 10.213.0.1/24 on the host; FORWARD accepts bridged traffic on it (one
  iptables rule with the comment ``gpuhubsw``: the host's FORWARD policy is DROP);
- namespace ``gpuhubsw-<node>`` per node, its ``eth0`` the peer of the host's ``gpuhubswv<i>``:
  manager 10.213.0.10, worker<i> 10.213.0.(10+i); no default route (nothing beyond the bridge);
- files under ``/var/tmp/gpuhub-swarm/run-*/<node>/`` (logs ``dockerd.log``, ``containerd.log``,
  ``registry.log`` there); container cgroups under ``/gpuhubsw-<node>``;
- swarm address pool 10.214.0.0/16, the attachable overlay ``gpuhub``, registry 10.213.0.10:5000.

Each node's containerd is started by the harness (``dockerd --containerd``), never by dockerd: a
dockerd 20.10 without ``--containerd`` uses /run/containerd/containerd.sock whenever that exists, and
nodes would then share one containerd. Each node has its own UTS namespace, so swarm sees the
hostnames ``manager``, ``worker1``... (``node.hostname==worker1`` works as a constraint).

The kernel here has no IPVS, so services must use endpoint mode ``dnsrr``; the routing mesh
(``ingress``) cannot work and is removed right after ``swarm init``, before the workers join
(``keep_ingress=True`` keeps it). Facts and timings: docs/swarm-test-facts.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import docker

ROOT = Path("/var/tmp/gpuhub-swarm")
PREFIX = "gpuhubsw"
BRIDGE = f"{PREFIX}0"
HOST_ADDRESS = "10.213.0.1"
NETMASK_BITS = 24
MANAGER_ADDRESS = "10.213.0.10"
REGISTRY = f"{MANAGER_ADDRESS}:5000"
ADDRESS_POOL = "10.214.0.0/16"
OVERLAY = "gpuhub"
API_VERSION = "1.41"
NODE_LABEL = "gpuhub.node"
CGROUP_FS = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
SHIM_SOCKETS = "/run/containerd/s/"
IPTABLES_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", PREFIX, "-j", "ACCEPT"]
TOOLS = {"ip": "iproute2", "iptables": "iptables", "nsenter": "util-linux", "unshare": "util-linux",
         "dockerd": "docker.io", "containerd": "containerd", "docker": "docker.io",
         "docker-registry": "docker-registry"}


class ClusterError(RuntimeError):
    pass


def run(args, *, timeout: float = 120, check: bool = True, env=None, input=None) -> subprocess.CompletedProcess:
    """Run a command, capture text output; on failure raise ClusterError with its stderr."""
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                              env=env, input=input)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"timed out after {timeout:.0f} s: {' '.join(map(str, args))}") from exc
    if check and proc.returncode != 0:
        raise ClusterError(f"exit {proc.returncode}: {' '.join(map(str, args))}\n{proc.stderr.strip()}")
    return proc


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5, diagnose=None):
    """Call ``predicate`` until it returns something truthy (returned); ClusterError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # kept for the message; the predicate is asked again
            last_error = exc
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f} s waiting for {what}"
            if last_error is not None:
                msg += f" (last error: {last_error})"
            if diagnose is not None:
                msg += "\n" + diagnose()
            raise ClusterError(msg)
        time.sleep(interval)


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _base_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        for p in alive:  # reap our own children
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.2)


def ensure_tools() -> None:
    """The host tools the harness needs; ``docker-registry`` is installed (apt) when missing, and
    its system service is stopped and disabled (the harness runs its own, in the manager)."""
    if os.geteuid() != 0:
        raise ClusterError("the swarm tier needs root (network namespaces, bridges, iptables, dockerd)")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], timeout=300, env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout=600, env=env)
        if "docker-registry" in missing and shutil.which("systemctl"):  # its package enables the service
            run(["systemctl", "disable", "docker-registry"], check=False, timeout=60)
            run(["systemctl", "stop", "docker-registry"], check=False, timeout=60)
        still = [t for t in TOOLS if shutil.which(t) is None]
        if still:
            raise ClusterError(f"missing after apt-get install {' '.join(missing)}: {still}")


# ---------------------------------------------------------------- finding and removing leftovers

def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _netns_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def _cgroup_dirs() -> list[Path]:
    found = []
    if CGROUP_FS.is_dir():
        for controller in CGROUP_FS.iterdir():
            try:
                found += [d for d in controller.iterdir() if d.name.startswith(PREFIX) and d.is_dir()]
            except OSError:
                pass
    return found


def _ancestors(pid: int) -> set[int]:
    chain = {1, pid}
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        chain.add(pid)
    return chain


def _our_pids() -> dict[int, str]:
    """Processes of this harness: command line under ROOT, inside a node namespace, or in a node cgroup."""
    pids: dict[int, str] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and str(ROOT) + "/" in _cmdline(int(entry)):
            pids[int(entry)] = _cmdline(int(entry))
    for ns in _netns_names():
        out = run(["ip", "netns", "pids", ns], check=False, timeout=30).stdout
        for p in out.split():
            if p.isdigit():
                pids.setdefault(int(p), _cmdline(int(p)))
    for d in _cgroup_dirs():
        for procs in d.rglob("cgroup.procs"):
            try:
                for p in procs.read_text().split():
                    pids.setdefault(int(p), _cmdline(int(p)))
            except OSError:
                pass
    for p in _ancestors(me):
        pids.pop(p, None)
    return {p: c for p, c in pids.items() if _pid_alive(p)}


def _shim_sockets(pid: int) -> list[str]:
    """The listening socket paths (under /run/containerd/s/) of a containerd shim, to remove after it is killed."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open(f"/proc/{pid}/net/unix") as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        return []
    return [r[7] for r in rows if len(r) >= 8 and r[6] in inodes and r[7].startswith(SHIM_SOCKETS)]


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
    return points


def _forward_rules() -> list[str]:
    out = run(["iptables", "-w", "10", "-S", "FORWARD"], check=False, timeout=30).stdout
    return [line for line in out.splitlines() if PREFIX in line]


def _links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False, timeout=30).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                names.append(name)
    return names


def leftovers() -> list[str]:
    """Everything of this harness still on the machine (empty after a clean teardown)."""
    found = [f"netns {n}" for n in _netns_names()]
    found += [f"link {n}" for n in _links()]
    found += [f"iptables {r}" for r in _forward_rules()]
    found += [f"process {p}: {c[:120]}" for p, c in sorted(_our_pids().items())]
    found += [f"mount {m}" for m in _mounts_under(ROOT)]
    found += [f"cgroup {d}" for d in _cgroup_dirs()]
    if ROOT.exists():
        found += [f"path {p}" for p in sorted(ROOT.iterdir()) if p.name != "lock"]
    return found


def cleanup(log=lambda msg: None) -> list[str]:
    """Remove everything of this harness, whatever state a run left it in; returns what is still
    there (empty on success). Only touches things named with the prefix or living under ROOT."""
    # 1. processes: dockerds first, gracefully (they stop their containers), then everything else.
    pids = _our_pids()
    dockerds = [p for p, c in pids.items() if c.split(" ")[0].endswith("dockerd")]
    for p in dockerds:
        _signal(p, signal.SIGTERM)
    if dockerds:
        log(f"stopping dockerd {dockerds}")
        _wait_gone(dockerds, 25)
    for _ in range(3):
        pids = _our_pids()
        if not pids:
            break
        log(f"killing {sorted(pids)}")
        sockets = [s for p, c in pids.items() if "containerd-shim" in c for s in _shim_sockets(p)]
        for p in pids:
            _signal(p, signal.SIGKILL)
        _wait_gone(list(pids), 10)
        for s in sockets:
            try:
                os.unlink(s)
            except OSError:
                pass
    # 2. mounts under ROOT (overlay, shm, netns binds), deepest first, lazily.
    for point in sorted(_mounts_under(ROOT), key=len, reverse=True):
        run(["umount", "-l", point], check=False, timeout=30)
    # 3. namespaces, links, the iptables rule.
    for ns in _netns_names():
        run(["ip", "netns", "del", ns], check=False, timeout=30)
    for name in _links():
        run(["ip", "link", "del", name], check=False, timeout=30)
    for rule in _forward_rules():
        run(["iptables", "-w", "10", *rule.replace("-A ", "-D ", 1).split()], check=False, timeout=30)
    # 4. cgroups (empty now), deepest first.
    for d in _cgroup_dirs():
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(str(p)), reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass
    # 5. files: only when nothing is mounted below any more.
    if ROOT.exists() and not _mounts_under(ROOT):
        for p in ROOT.iterdir():
            if p.name != "lock":
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    # 6. /run/netns as `ip netns add` left it (a bind mount of itself), when no namespace is left in it.
    try:
        if NETNS_DIR.is_dir() and not os.listdir(NETNS_DIR):
            run(["umount", str(NETNS_DIR)], check=False, timeout=30)
            NETNS_DIR.rmdir()
    except OSError:
        pass
    # Namespaces die asynchronously in the kernel: their veth peers vanish a moment later.
    try:
        wait_for(lambda: not leftovers(), 15, "the last leftovers to vanish")
    except ClusterError:
        pass
    return leftovers()


# ---------------------------------------------------------------- nodes


class Node:
    """One swarm node: a network namespace with its own containerd and dockerd."""

    def __init__(self, cluster: Cluster, name: str, index: int, address: str, role: str):
        self.cluster = cluster
        self.name = name
        self.index = index
        self.address = address
        self.role = role
        self.netns = f"{PREFIX}-{name}"
        self.netns_path = NETNS_DIR / self.netns
        self.host_veth = f"{PREFIX}v{index}"
        self.dir = cluster.dir / name
        self.socket = self.dir / "docker.sock"
        self.containerd_socket = self.dir / "containerd.sock"
        self.url = f"unix://{self.socket}"
        self.env = {**_base_env(), "DOCKER_HOST": self.url}
        self.cgroup_parent = f"/{PREFIX}-{name}"
        self.node_id: str | None = None
        self._dockerd: subprocess.Popen | None = None
        self._containerd: subprocess.Popen | None = None
        self._client: docker.DockerClient | None = None

    def __repr__(self):
        return f"<Node {self.name} {self.address} {self.role} {self.node_id or ''}>"

    # -- talking to its engine
    def docker(self, *args, timeout: float = 120, check: bool = True, input=None) -> subprocess.CompletedProcess:
        """The docker CLI against this node's engine."""
        return run(["docker", "-H", self.url, *args], timeout=timeout, check=check, env=self.env, input=input)

    def client(self) -> docker.DockerClient:
        """docker-py against this node's engine (one per engine start)."""
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.url, version=API_VERSION, timeout=60)
        return self._client

    def log_tail(self, lines: int = 30) -> str:
        return (f"----- {self.name} dockerd.log -----\n{_tail(self.dir / 'dockerd.log', lines)}\n"
                f"----- {self.name} containerd.log -----\n{_tail(self.dir / 'containerd.log', max(5, lines // 3))}")

    # -- set up
    def create_namespace(self) -> None:
        peer = f"{PREFIX}p{self.index}"
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", self.netns])
        run(["ip", "link", "set", self.host_veth, "master", BRIDGE, "up"])
        run(["ip", "-n", self.netns, "link", "set", peer, "name", "eth0"])
        run(["ip", "-n", self.netns, "addr", "add", f"{self.address}/{NETMASK_BITS}", "dev", "eth0"])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])

    def write_config(self) -> None:
        d = self.dir
        for sub in ("data", "exec", "containerd/root", "containerd/state", "containerd/opt"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "containerd.toml").write_text(f'''version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[debug]
  address = "{d}/containerd-debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
''')
        (d / "daemon.json").write_text(json.dumps({
            "data-root": f"{d}/data",
            "exec-root": f"{d}/exec",
            "pidfile": f"{d}/docker.pid",
            "hosts": [self.url],
            "containerd": str(self.containerd_socket),
            "deprecated-key-path": f"{d}/key.json",
            "cgroup-parent": self.cgroup_parent,
            "iptables": True,
            "no-new-privileges": True,
            "insecure-registries": [REGISTRY],
            "userland-proxy": False,
            "storage-driver": "overlay2",
            "shutdown-timeout": 5,
            "log-level": "info",
        }, indent=2))

    def _spawn(self, args, log: str) -> subprocess.Popen:
        """A process in this node's network namespace and a UTS namespace named after the node."""
        with open(self.dir / log, "ab") as out:
            return subprocess.Popen(
                ["unshare", "--uts", "--", "nsenter", f"--net={self.netns_path}", "--",
                 "sh", "-c", 'hostname "$0" && exec "$@"', self.name, *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_base_env(), start_new_session=True)

    def start_engine(self, timeout: float = 60) -> None:
        """Start containerd and dockerd (again, after ``kill_engine``) and wait until the engine answers."""
        if self.engine_running():
            return
        self._client = None
        self._containerd = self._spawn(["containerd", "--config", str(self.dir / "containerd.toml")], "containerd.log")
        wait_for(lambda: self.containerd_socket.exists() or self._containerd.poll() is not None, 20,
                 f"{self.name}'s containerd socket", 0.1)
        if self._containerd.poll() is not None:
            raise ClusterError(f"{self.name}'s containerd exited ({self._containerd.returncode})\n{self.log_tail()}")
        self._dockerd = self._spawn(["dockerd", "--config-file", str(self.dir / "daemon.json")], "dockerd.log")

        def answers():
            if self._dockerd.poll() is not None:
                raise ClusterError(f"{self.name}'s dockerd exited ({self._dockerd.returncode})")
            return self.docker("version", "--format", "{{.Server.Version}}", timeout=10, check=False).returncode == 0

        wait_for(answers, timeout, f"{self.name}'s dockerd to answer", 0.3, diagnose=self.log_tail)

    def engine_running(self) -> bool:
        return self._dockerd is not None and self._dockerd.poll() is None

    def kill_engine(self) -> None:
        """SIGKILL dockerd and containerd: the node is lost (its containers' shims keep running)."""
        procs = [p for p in (self._dockerd, self._containerd) if p is not None and p.poll() is None]
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)
        self._client = None

    def _terminate_engine(self, timeout: float) -> None:
        """SIGTERM dockerd, then containerd; SIGKILL what is still there after ``timeout``."""
        for p in (self._dockerd, self._containerd):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=30)

    def restart_engine(self, timeout: float = 60) -> None:
        """Restart dockerd and containerd as a service manager does (SIGTERM, then start again): its
        containers stop and come back by their restart policies; the node stays in the Swarm."""
        self._terminate_engine(timeout)
        self._client = None
        self.start_engine(timeout)

    def stop_engine(self, timeout: float = 30) -> None:
        """Stop gracefully: remove its containers, SIGTERM dockerd, then containerd (SIGKILL after ``timeout``)."""
        if self.engine_running():
            ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
        self._terminate_engine(timeout)
        if self._client is not None:
            self._client.close()
        self._client = None

    # -- swarm view from the manager
    def swarm_state(self) -> dict:
        """This node as the manager sees it (``docker node inspect``)."""
        return self.cluster.manager.client().api.inspect_node(self.node_id)


@contextlib.contextmanager
def loopback_relay(address: str, port: int):
    """A TCP relay from a free port on 127.0.0.1 to ``address:port`` (a namespace's), while in use."""
    server = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (source, target):
                s.close()

    def accept() -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection((address, port), timeout=30)
            except OSError:
                return
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


# ---------------------------------------------------------------- the cluster


class Cluster:
    """A manager and N workers on one bridge, a registry on the manager, the overlay ``gpuhub``."""

    def __init__(self, workers: int = 2):
        self.dir: Path | None = None
        self.nodes: list[Node] = []
        self.workers_wanted = workers
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self.stale: list[str] = []
        self._registry: subprocess.Popen | None = None
        self._staged: dict[tuple[str, str], concurrent.futures.Future] = {}  # ("push" | "load", what) → its one run
        self._staging = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="swarm-stage")
        self._staged_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._started = False

    # -- access
    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r}; nodes: {[n.name for n in self.nodes]}")

    def node_id(self, name: str) -> str:
        return self.node(name).node_id

    def logs_tail(self, lines: int = 30) -> str:
        parts = [n.log_tail(lines) for n in self.nodes]
        if self.dir is not None and (self.dir / "registry.log").exists():
            parts.append(f"----- registry.log -----\n{_tail(self.dir / 'registry.log', 10)}")
        return "\n".join(parts)

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.5):
        """``wait_for`` whose failure message carries every node's log tail."""
        return wait_for(predicate, timeout, what, interval, diagnose=self.logs_tail)

    def _time(self, key: str, t0: float) -> float:
        self.timings[key] = round(time.monotonic() - t0, 2)
        return self.timings[key]

    # -- life cycle
    @classmethod
    def start(cls, workers: int = 2, images=("gpuhub/debian-base:bookworm",), dispatcher_heartbeat: str | None = None,
              keep_ingress: bool = False, log=lambda msg: None) -> Cluster:
        """Build the cluster; ``images`` (on the host engine) are pushed to the registry and pulled
        on every worker. A failing step tears everything down and raises ClusterError with the logs."""
        cluster = cls(workers)
        try:
            cluster._start(images, dispatcher_heartbeat, keep_ingress, log)
        except BaseException as exc:
            tails = cluster.logs_tail(40) if cluster.nodes else ""
            cluster.stop()
            if isinstance(exc, ClusterError):
                raise ClusterError(f"{exc}\n{tails}") from exc
            raise
        return cluster

    def _lock(self) -> None:
        ROOT.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(ROOT / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ClusterError(f"another swarm test cluster is running ({ROOT / 'lock'} is locked)") from None

    def _start(self, images, dispatcher_heartbeat, keep_ingress, log) -> None:
        t_all = time.monotonic()
        ensure_tools()
        self._lock()
        t0 = time.monotonic()
        self.stale = leftovers()
        if self.stale:
            log(f"removing leftovers of an earlier run: {self.stale}")
            still = cleanup(log)
            if still:
                raise ClusterError(f"could not remove leftovers of an earlier run: {still}")
        self._time("cleanup_stale", t0)
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT))
        self.nodes = [Node(self, "manager", 0, MANAGER_ADDRESS, "manager")]
        self.nodes += [Node(self, f"worker{i}", i, f"10.213.0.{10 + i}", "worker")
                       for i in range(1, self.workers_wanted + 1)]

        t0 = time.monotonic()
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{HOST_ADDRESS}/{NETMASK_BITS}", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        run(["iptables", "-w", "10", "-I", *IPTABLES_RULE])
        for n in self.nodes:
            n.create_namespace()
            n.write_config()
        self._time("network", t0)

        t0 = time.monotonic()
        self._parallel(lambda n: n.start_engine(), self.nodes)
        self._time("engines_start", t0)

        t0 = time.monotonic()
        init = ["swarm", "init", "--advertise-addr", MANAGER_ADDRESS, "--listen-addr", f"{MANAGER_ADDRESS}:2377",
                "--default-addr-pool", ADDRESS_POOL]
        if dispatcher_heartbeat:
            init += ["--dispatcher-heartbeat", dispatcher_heartbeat]
        self.manager.docker(*init, timeout=60)
        if not keep_ingress:
            # No IPVS in this kernel: the routing mesh cannot work. Nothing here publishes ports, so
            # its network goes, before the workers join (they would set it up, and log failures).
            self.manager.docker("network", "rm", "ingress", input="y\n", timeout=60)
        token = self.manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for w in self.workers:
            w.docker("swarm", "join", "--token", token, "--advertise-addr", w.address,
                     "--listen-addr", f"{w.address}:2377", f"{MANAGER_ADDRESS}:2377", timeout=60)
        for n in self.nodes:
            n.node_id = n.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
            self.manager.docker("node", "update", "--label-add", f"{NODE_LABEL}={n.name}", n.node_id)
        self.wait_for(self.all_ready, 60, "every node Ready")
        self._time("swarm_form", t0)

        t0 = time.monotonic()
        self.manager.docker("network", "create", "--driver", "overlay", "--attachable",
                            "--label", "org.gpuhub.network=true", OVERLAY, timeout=60)
        self._time("networks", t0)

        t0 = time.monotonic()
        self.registry_start()
        self._time("registry_start", t0)

        for image in images:
            ref = self.push(image)
            self.pull(ref, self.nodes)  # the manager's own tests run it too
        self._started = True
        self._time("setup_total", t_all)

    def _parallel(self, fn, items):
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
            return [f.result() for f in [pool.submit(fn, i) for i in items]]

    def stop(self) -> list[str]:
        """Tear everything down (idempotent); returns what could not be removed (empty on success)."""
        if self._lock_fd is None:  # never started (or another run holds the lock): nothing of ours
            return []
        t0 = time.monotonic()
        try:
            self._staging.shutdown(wait=True, cancel_futures=True)  # nothing is pushed into what goes away
            if self.nodes and self.manager.engine_running():
                ids = self.manager.docker("service", "ls", "-q", check=False, timeout=30).stdout.split()
                if ids:
                    self.manager.docker("service", "rm", *ids, check=False, timeout=60)
            def stop_engine(node: Node) -> None:
                try:
                    node.stop_engine()
                except Exception:  # cleanup() below kills what is left
                    pass

            self._parallel(stop_engine, self.nodes)  # the whole Swarm goes: no node waits for another
            self.registry_stop()
            self._time("teardown_engines", t0)
        finally:
            t1 = time.monotonic()
            left = cleanup()
            self._time("teardown_cleanup", t1)
            t1 = time.monotonic()
            if self.dir is not None and self.dir.exists() and not _mounts_under(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)
            self._time("teardown_remove_files", t1)
            if self._lock_fd is not None:
                try:
                    (ROOT / "lock").unlink(missing_ok=True)
                    if not any(ROOT.iterdir()):
                        ROOT.rmdir()
                except OSError:
                    pass
                os.close(self._lock_fd)
                self._lock_fd = None
            self._time("teardown", t0)
        return left

    # -- swarm state
    def swarm_nodes(self) -> list[dict]:
        return self.manager.client().api.nodes()

    def all_ready(self) -> bool:
        nodes = self.swarm_nodes()
        return len(nodes) == len(self.nodes) and all(n["Status"]["State"] == "ready" for n in nodes)

    def node_state(self, name: str) -> str:
        """The manager's view of a node: ready / down / unknown / disconnected."""
        return self.node(name).swarm_state()["Status"]["State"]

    def tasks(self, service: str) -> list[dict]:
        """A service's tasks as the manager sees them, newest first."""
        tasks = self.manager.client().api.tasks(filters={"service": service})
        return sorted(tasks, key=lambda t: t["CreatedAt"], reverse=True)

    def wait_task(self, service: str, predicate, timeout: float, what: str) -> dict:
        """The newest task of ``service`` for which ``predicate(task)`` holds (bounded wait); the
        seconds waited are in ``task["_waited_s"]``."""
        t0 = time.monotonic()
        task = wait_for(lambda: next((t for t in self.tasks(service) if predicate(t)), None), timeout,
                        f"{what} (service {service})",
                        diagnose=lambda: f"its newest tasks: {self.task_summary(service)}\n{self.logs_tail()}")
        task["_waited_s"] = round(time.monotonic() - t0, 2)
        return task

    def running_task(self, service: str, node: Node | None = None, timeout: float = 60) -> dict:
        """A running task of ``service`` (on ``node`` when given)."""
        def ok(t):
            return (t["Status"]["State"] == "running" and t["DesiredState"] == "running"
                    and (node is None or t.get("NodeID") == node.node_id))
        return self.wait_task(service, ok, timeout, f"a running task{' on ' + node.name if node else ''}")

    def task_summary(self, service: str) -> list:
        """(node, desired state, state, error or message) of a service's newest tasks, for messages."""
        try:
            names = {n.node_id: n.name for n in self.nodes}
            return [(names.get(t.get("NodeID"), t.get("NodeID")), t["DesiredState"], t["Status"]["State"],
                     t["Status"].get("Err") or t["Status"].get("Message")) for t in self.tasks(service)][:5]
        except Exception as exc:  # only for a message
            return [f"(unavailable: {exc})"]

    # -- registry
    def registry_start(self, timeout: float = 30) -> None:
        if self._registry is not None and self._registry.poll() is None:
            return
        config = self.dir / "registry.yml"
        storage = self.dir / "registry"
        storage.mkdir(exist_ok=True)
        config.write_text(f"""version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {REGISTRY}
""")
        with open(self.dir / "registry.log", "ab") as out:
            self._registry = subprocess.Popen(
                ["nsenter", f"--net={self.manager.netns_path}", "--", "docker-registry", "serve", str(config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=_base_env(),
                start_new_session=True)

        def up():
            if self._registry.poll() is not None:
                raise ClusterError(f"docker-registry exited ({self._registry.returncode})")
            return self.registry_up()

        self.wait_for(up, timeout, f"the registry at {REGISTRY}", 0.2)

    def registry_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def registry_stop(self) -> None:
        """Stop the registry (a fault the tests inject), once the pushes under way have ended."""
        self._wait_staged("push")
        p = self._registry
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self._registry = None

    def registry_catalog(self) -> list[str]:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/_catalog", timeout=5) as r:
            return json.load(r)["repositories"]

    # -- images
    # -- images: each push and load runs once; ``stage`` starts them early, in the background, and
    # whoever needs one first waits for it (the user image's push and the hub image's load take
    # 1-3 minutes together: they overlap with the cluster's own tests)
    def stage(self, *, push: tuple[str, ...] = (), load: tuple[str, ...] = ()) -> None:
        """Start pushing ``push`` and loading ``load`` (into the manager) now, without waiting."""
        for image in push:
            self._once("push", image, lambda image=image: self._push(image))
        for image in load:
            self._once("load", image, lambda image=image: self._load(image, self.manager))

    def _once(self, kind: str, what: str, fn) -> concurrent.futures.Future:
        with self._staged_lock:
            future = self._staged.get((kind, what))
            if future is None:
                future = self._staged[(kind, what)] = self._staging.submit(fn)
            return future

    def _wait_staged(self, kind: str) -> None:
        for (k, _), future in list(self._staged.items()):
            if k == kind:
                concurrent.futures.wait([future])

    def load(self, image: str, node: Node | None = None) -> None:
        """``docker save`` on the host engine piped into ``docker load`` on a node (the manager by
        default; into the manager once, also when ``stage`` started it)."""
        if node is None or node is self.manager:
            self._once("load", image, lambda: self._load(image, self.manager)).result()
        else:
            self._load(image, node)

    def _load(self, image: str, node: Node) -> None:
        t0 = time.monotonic()
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            loaded = subprocess.run(["docker", "-H", node.url, "load", "-q"], stdin=save.stdout,
                                    capture_output=True, text=True, env=node.env, timeout=900)
        finally:
            save.stdout.close()
            save_err = save.stderr.read().decode(errors="replace")
            save.stderr.close()
            save.wait(timeout=60)
        if save.returncode != 0 or loaded.returncode != 0:
            raise ClusterError(f"docker save {image} | docker -H {node.url} load failed: "
                               f"{save_err.strip()} {loaded.stderr.strip()}")
        self._time(f"save_load[{image}->{node.name}]", t0)

    def push(self, image: str, name: str | None = None) -> str:
        """Push a host image to the manager's registry as ``10.213.0.10:5000/<name or image>`` and
        return that reference (once per reference, also when ``stage`` started it). The host's
        engine pushes it itself, through a relay on the host's loopback (Docker takes a 127.0.0.1
        registry as plain HTTP without any daemon setting): no copy of the image goes through the
        manager's engine."""
        return self._once("push", name or image, lambda: self._push(image, name)).result()

    def _push(self, image: str, name: str | None = None) -> str:
        ref = f"{REGISTRY}/{name or image}"
        t0 = time.monotonic()
        with loopback_relay(MANAGER_ADDRESS, 5000) as port:
            local = f"127.0.0.1:{port}/{name or image}"
            run(["docker", "tag", image, local])
            try:
                run(["docker", "push", local], timeout=900)
            finally:
                run(["docker", "rmi", local], check=False)  # the tag only: the image stays
        self._time(f"push[{ref}]", t0)
        return ref

    def pull(self, ref: str, nodes=None) -> None:
        """Pull ``ref`` from the registry on ``nodes`` (every worker by default), in parallel."""
        nodes = self.workers if nodes is None else nodes
        t0 = time.monotonic()
        self._parallel(lambda n: n.docker("pull", "-q", ref, timeout=900), nodes)
        self._time(f"pull[{ref}->{','.join(n.name for n in nodes)}]", t0)
