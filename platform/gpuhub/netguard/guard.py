"""The netguard service: each user container's rules into its network namespace as it starts.

A container with the network label (``c.NETWORK_LABEL``, the hub's ``policy.network`` decision)
starts; its start (images/pytorch-cuda/bin/gpuhub-start) waits. netguard sees the engine's ``start``
event, reads the container (its process, networks, resolv.conf) and the hub's containers, renders
``policy.network.ruleset`` and loads it with ``nsenter --net=/proc/PID/ns/net iptables-restore`` (IPv4
and IPv6), then puts the marker ``c.RULES_APPLIED_MARKER`` into the container, owned by root, through
the engine; it names the start it is for (``places.process_start``: the container's first process's
start time), so the marker of an earlier start of the same container does not count. A label it
cannot use, or rules that fail to load, and it puts a refusal with the reason instead: the
container's start prints it and exits, and the spawn fails saying why.

At its own start, and whenever a hub container starts (its address may be new), it applies the rules
of every running labelled container again (``iptables-restore`` replaces the table at once; open
connections stay). A broken event stream (the engine restarting) is opened again, followed by a full
pass. It never changes the host's own rules.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
import time
from pathlib import Path, PurePosixPath

import docker
import docker.errors
import requests

from .. import contract as c
from ..contract import iso, utcnow
from ..policy.network import RULESET_V6, PolicyError, parse_label, ruleset
from .places import container_networks, process_start, surroundings

log = logging.getLogger("gpuhub.netguard")
MARKER_DIR = str(PurePosixPath(c.RULES_APPLIED_MARKER).parent)  # /run/gpuhub


class RulesFailed(Exception):
    """The rules could not be loaded into a container's namespace; the message says why."""


def short(container_id: str) -> str:
    return container_id[:12]


def hub_addresses_of(hubs: list[dict]) -> tuple[str, ...]:
    """Every address of the hub containers (a change means the rules must be written again)."""
    return tuple(sorted(n.get("IPAddress", "") for h in hubs for n in container_networks(h).values()))


def marker_tar(name: str, text: str) -> bytes:
    """A tar of ``gpuhub/NAME`` (the folder 0755, the file 0644, both root's) to unpack in ``/run``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(PurePosixPath(MARKER_DIR).name)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        data = text.encode()
        item = tarfile.TarInfo(f"{folder.name}/{name}")
        item.size, item.mode = len(data), 0o644
        tar.addfile(item, io.BytesIO(data))
    return buffer.getvalue()


class NetGuard:
    """``client``: the engine's docker-py client; ``proc``: the host's /proc as this process sees it
    (``/proc`` on the host, ``/hostproc`` in docker-compose.yml's service); ``hub_on_host``: the hub
    runs on the host, not in a container (the test harness); ``hub_given``: the hub's addresses, where
    its container is on another engine (a Swarm node's netguard, told them by the hub); ``other_hosts``:
    the other hosts' addresses (a Swarm's nodes), refused as this host's are; ``nsenter``/``restore``: the programs."""

    def __init__(self, client: docker.DockerClient, proc: Path = Path("/proc"), hub_on_host: bool = False, nsenter: str = "nsenter",
                 restore: tuple[str, str] = ("iptables-restore", "ip6tables-restore"), hub_given: tuple[str, ...] = (),
                 other_hosts: tuple[str, ...] = ()):
        self.client = client
        self.proc = proc
        self.hub_on_host = hub_on_host
        self.hub_given = hub_given
        self.other_hosts = other_hosts
        self.hub_seen: tuple[str, ...] | None = None  # the hub containers' addresses at the last full pass
        self.nsenter = nsenter
        self.restore = restore

    # --- one container ---------------------------------------------------------------------------------

    def load(self, pid: int, program: str, text: str) -> None:
        done = subprocess.run(
            [self.nsenter, f"--net={self.proc / str(pid) / 'ns/net'}", program], input=text.encode(),
            capture_output=True, timeout=30,
        )
        if done.returncode != 0:
            raise RulesFailed(f"{program} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()[:500]}")

    def hubs(self) -> list[dict]:
        """The running hub containers (never a user's: those carry the network label)."""
        found = self.client.containers.list(filters={"label": f"{c.HUB_ROLE_LABEL}=hub"})
        return [h.attrs for h in found if c.NETWORK_LABEL not in (h.attrs.get("Config", {}).get("Labels") or {})]

    def host_namespace(self, pid: int) -> bool:
        """Whether ``pid``'s network namespace is netguard's own, the engine's (a container with the
        host's network, or a pid reused by a host process): never written into."""
        try:
            return (self.proc / str(pid) / "ns/net").stat().st_ino == Path("/proc/self/ns/net").stat().st_ino
        except OSError:
            return True  # cannot tell: do not write

    def apply(self, container_id: str, hubs: list[dict] | None = None) -> bool:
        """Rules into one container and its marker; False (and a refusal in it) when they cannot be."""
        try:
            attrs = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False  # gone already
        labels = attrs.get("Config", {}).get("Labels") or {}
        name = f"{labels.get(c.USER_LABEL, '?')}:{labels.get(c.SERVER_LABEL, '')} {short(container_id)}"
        pid = attrs.get("State", {}).get("Pid") or 0
        if not attrs.get("State", {}).get("Running") or pid <= 0:
            return False
        started = time.monotonic()
        try:
            this_start = process_start((self.proc / str(pid) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            return False  # ended meanwhile
        try:
            if self.host_namespace(pid):
                raise RulesFailed("the container shares the host's network namespace: no rules of its own can hold")
            policy = parse_label(labels.get(c.NETWORK_LABEL, ""))
            around = surroundings(attrs, self.hubs() if hubs is None else hubs, self.proc, self.hub_on_host, self.hub_given, self.other_hosts)
            if not around.hub:  # not this netguard's hub (another's on the same engine, or not started yet)
                log.info("%s: no hub on its networks: left to the netguard of its hub", name)
                return False
            if not around.dns:
                log.warning("%s: no DNS server found for it (its resolv.conf and the host's): names will not resolve", name)
            self.load(pid, self.restore[0], ruleset(policy, around))
            self.load(pid, self.restore[1], RULESET_V6)
        except Exception as e:  # anything: this container is refused (it never runs), netguard goes on
            if not isinstance(e, (PolicyError, RulesFailed, OSError, subprocess.TimeoutExpired)):
                log.exception("%s: an unexpected error while writing the network rules", name)
            log.error("%s: network rules NOT applied, the container will not run: %s", name, e)
            self._mark(container_id, c.RULES_REFUSED_MARKER, f"{this_start} {e}\n")
            return False
        self._mark(container_id, c.RULES_APPLIED_MARKER, f"{this_start} applied {iso(utcnow())}\n")
        log.info(
            "%s: network rules applied in %.0f ms (hub %s, egress %s, %d allowed networks, %d peers)",
            name, (time.monotonic() - started) * 1000, ",".join(around.hub) or "-", policy.egress, len(policy.allow), len(policy.peers),
        )
        return True

    def _mark(self, container_id: str, path: str, text: str) -> None:
        name = PurePosixPath(path).name
        try:
            self.client.api.put_archive(container_id, str(PurePosixPath(MARKER_DIR).parent), marker_tar(name, text))
        except docker.errors.APIError as e:  # gone meanwhile: nothing waits any more
            log.warning("%s: could not put %s into the container: %s", short(container_id), path, e)

    # --- every container -------------------------------------------------------------------------------

    def labelled(self) -> list[str]:
        return [x.id for x in self.client.containers.list(filters={"label": c.NETWORK_LABEL}, sparse=True)]

    def apply_all(self) -> int:
        hubs = self.hubs()
        self.hub_seen = hub_addresses_of(hubs)
        return sum(self.apply(container_id, hubs) for container_id in self.labelled())

    def hub_started(self) -> None:
        """A hub container started: every container's rules again, if the hub's addresses changed."""
        if hub_addresses_of(self.hubs()) == self.hub_seen:
            return
        log.info("the hub's addresses changed: every container's rules again")
        self.apply_all()

    def run(self) -> None:
        """Serve for ever (SIGTERM ends the process)."""
        while True:
            try:
                events = self.client.events(decode=True, filters={"type": "container", "event": "start"})
            except (docker.errors.DockerException, requests.RequestException) as e:
                log.warning("the engine did not answer (%s); trying again in 2 s", e)
                time.sleep(2)
                continue
            try:
                count = self.apply_all()  # after subscribing: a start meanwhile is in the stream too
                log.info("watching the engine's starts; %d running containers have their rules", count)
                for event in events:
                    attributes = event.get("Actor", {}).get("Attributes", {})
                    if c.NETWORK_LABEL in attributes:
                        self.apply(event["id"])
                    elif attributes.get(c.HUB_ROLE_LABEL) == "hub":
                        self.hub_started()
            except (docker.errors.DockerException, requests.RequestException) as e:
                log.warning("the engine's event stream broke (%s); opening it again", e)
                time.sleep(1)
            finally:
                events.close()
