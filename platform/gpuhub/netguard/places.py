"""Where a starting container is, as netguard learns it: the hub's addresses it sees, its DNS servers,
its own networks, the host's addresses. Parsers of the texts are pure; ``surroundings`` does the reads."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ..policy.network import Surroundings

EMBEDDED_DNS = "127.0.0.11"  # the engine's resolver in a container on a user-defined network


def nameservers(resolv_conf: str) -> list[str]:
    """The IPv4 ``nameserver`` addresses of a resolv.conf text, in order."""
    found = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if address.version == 4:
                found.append(str(address))
    return found


def local_addresses(fib_trie: str) -> list[str]:
    """The addresses a network namespace owns, from its ``/proc/net/fib_trie``: each ``|-- ADDR``
    followed by a ``/32 host LOCAL`` line (loopback ones left out)."""
    found, last = [], None
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|-- "):
            last = text[4:]
        elif last and text.startswith("/32 host LOCAL"):
            if not last.startswith("127.") and last not in found:
                found.append(last)
    return found


def _network_of(address: str, prefix: int) -> str | None:
    if not address or not prefix:
        return None
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def container_networks(attrs: dict) -> dict[str, dict]:
    """A container's networks (``docker inspect``'s NetworkSettings.Networks), by network id."""
    return {n.get("NetworkID", name): n for name, n in (attrs.get("NetworkSettings", {}).get("Networks") or {}).items()}


def hub_addresses(container: dict, hubs: list[dict], hub_on_host: bool = False, given: tuple[str, ...] = ()) -> list[str]:
    """The hub's addresses ``container`` sees: the running hub containers' (``c.HUB_ROLE_LABEL``)
    addresses on the networks they share with it; where none shares one, those of ``given`` (the hub's
    addresses the hub told a Swarm node's netguard: its container is on another node) that lie in one
    of the container's networks; else, with ``hub_on_host`` (the hub runs on the host, as the test
    harness runs it), the gateways of the container's networks."""
    mine = container_networks(container)
    found = []
    for hub in hubs:
        for network_id, endpoint in container_networks(hub).items():
            if network_id in mine and endpoint.get("IPAddress"):
                found.append(endpoint["IPAddress"])
    if not found and given:
        subnets = [ipaddress.ip_network(n, strict=False) for n in own_networks(container)]
        found = [a for a in given if any(ipaddress.ip_address(a) in subnet for subnet in subnets)]
    if not found and hub_on_host:
        found = [n["Gateway"] for n in mine.values() if n.get("Gateway")]
    return list(dict.fromkeys(found))


def own_networks(container: dict) -> list[str]:
    """The subnets of the container's networks (``10.0.1.0/24``), from its addresses and prefixes."""
    found = [_network_of(n.get("IPAddress", ""), n.get("IPPrefixLen", 0)) for n in container_networks(container).values()]
    return list(dict.fromkeys(n for n in found if n))


def dns_servers(container_resolv: str, host_resolv: str) -> list[str]:
    """The DNS servers the container's lookups reach: those of its resolv.conf; where that is the
    engine's embedded resolver, the host's (which that resolver asks from the container's own
    namespace). Loopback addresses are the container's own (allowed as loopback)."""
    servers = nameservers(container_resolv)
    if EMBEDDED_DNS in servers:
        servers += nameservers(host_resolv)
    return [s for s in dict.fromkeys(servers) if not s.startswith("127.")]


def process_start(stat: str) -> str:
    """A process's start time (field 22 of ``/proc/PID/stat``, clock ticks since the host booted): the
    same number inside the container (its PID 1's) and outside (that process's host PID), and a new
    one at every start of the container. The markers carry it, so a marker left by an earlier start
    of the same container (``docker restart``) never counts."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # fields[0] is field 3 (state)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


HOST_RESOLV = (
    Path("/etc/resolv.conf"),
    Path("/run/systemd/resolve/resolv.conf"),  # docker-compose.yml's service mounts /run/systemd/resolve
    Path("/hostrun/systemd/resolve/resolv.conf"),  # the Swarm service mounts the node's /run (policy.services.HOST_RUN)
)


def host_resolv() -> str:
    """The host's resolv.conf as the engine uses it: netguard's own (it has the host's network, so the
    engine gave it the host's file; on the host, the host's), or systemd-resolved's upstream file where
    that one names only its stub at 127.0.0.53."""
    text = _read(HOST_RESOLV[0])
    servers = nameservers(text)
    if servers and all(s.startswith("127.") for s in servers):
        text = next((t for t in map(_read, HOST_RESOLV[1:]) if t), text)
    return text


def surroundings(
    container: dict, hubs: list[dict], proc: Path, hub_on_host: bool = False, given: tuple[str, ...] = (), other_hosts: tuple[str, ...] = ()
) -> Surroundings:
    """What ``container`` (its ``docker inspect``) sees around it. ``proc``: the host's /proc as netguard
    sees it; the host's addresses are those of netguard's own network namespace (it runs in the
    engine's: docker-compose.yml and the Swarm service give it the host's network); ``hub_on_host``
    and ``given``: as ``hub_addresses``; ``other_hosts``: other hosts' addresses (a Swarm's other nodes),
    counted with the host's."""
    pid = container["State"]["Pid"]
    return Surroundings(
        hub=tuple(hub_addresses(container, hubs, hub_on_host, given)),
        dns=tuple(dns_servers(_read(proc / f"{pid}/root/etc/resolv.conf"), host_resolv())),
        own_networks=tuple(own_networks(container)),
        host=tuple(dict.fromkeys([*local_addresses(_read(Path("/proc/self/net/fib_trie"))), *other_hosts])),
    )

