"""What a user's container may reach, and what may reach it: pure. No Docker, no hub.

The hub decides a container's network policy when it builds the container (``NetworkPolicy.label``: a label
of the container, which users cannot change); ``gpuhub.netguard`` reads it when the container starts,
learns the addresses it cannot know in advance (the hub's and the DNS servers' addresses, the
container's networks, the host's own addresses) and writes ``ruleset``'s tables into the container's
own network namespace with ``iptables-restore``. Everything not allowed is refused (``REJECT``: a
connection fails at once, with "connection refused", rather than hanging).

In: the loopback, replies to the container's own connections, and new connections from the hub and
its proxy (any port: what the user serves behind the proxy) and from the container's session peers
(a class that opted in to group work). Out, first match wins: the loopback and replies; DNS (port 53
to the resolvers the container's lookups use); the instance-metadata address refused (always); the
hub's API port; the host's own addresses refused; session peers; the container's own networks (other
users) refused; ``egress_allow`` accepted; then
``egress``: ``allowed`` refuses the private ranges and accepts the rest, ``allowlist`` and ``denied``
refuse the rest. IPv6: nothing but the loopback.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import urlparse

from ..config.network import GROUP_SUBNET_PREFIX


METADATA = "169.254.169.254/32"  # the cloud's instance-metadata service: a VM's credentials live there
# Not the internet: RFC 1918, carrier-grade NAT (RFC 6598), link-local, "this network", multicast and reserved.
PRIVATE_RANGES = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4",
)
EGRESS_MODES = ("allowed", "allowlist", "denied")
LABEL_VERSION = 1


class PolicyError(ValueError):
    """A container's network label netguard cannot use: it applies nothing, and the container never runs."""


@dataclass(frozen=True)
class NetworkPolicy:
    """The hub's decision for one container (its ``c.NETWORK_LABEL``)."""

    hub_port: int
    egress: str = "allowed"
    allow: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()  # networks of a session's group work (their members reach each other)

    def label(self) -> str:
        return json.dumps(
            {"v": LABEL_VERSION, "hub_port": self.hub_port, "egress": self.egress, "allow": list(self.allow), "peers": list(self.peers)},
            separators=(",", ":"),
        )


def hub_api_port(settings) -> int:
    """The port users' containers reach the hub's API on (``[hub] hub_connect_url``, else ``hub_bind_url``;
    a URL without one: its scheme's, as JupyterHub reads it)."""
    url = urlparse(settings.hub.hub_connect_url or settings.hub.hub_bind_url)
    return url.port or (443 if url.scheme == "https" else 80)


def policy_for(settings, peers: tuple[str, ...] = ()) -> NetworkPolicy | None:
    """The policy ``[network]`` gives a container of this hub (on one host and on a Swarm alike); None
    without isolation."""
    n = settings.network
    if not n.isolation:
        return None
    return NetworkPolicy(hub_port=hub_api_port(settings), egress=n.egress, allow=tuple(n.egress_allow), peers=peers)


def free_subnet(pool: str, taken: list[str], prefix: int = GROUP_SUBNET_PREFIX) -> str | None:
    """The first /``prefix`` of ``pool`` that overlaps none of ``taken`` (the engine's networks'
    subnets, IPv6 ones ignored); None when every one does."""
    used = [ipaddress.ip_network(t, strict=False) for t in taken if ":" not in t]
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    return None


def _networks(values, what: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"{what}: expected a list of networks, got {values!r}")
    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in values)
    except ValueError as e:
        raise PolicyError(f"{what}: {e}") from None


def parse_label(text: str) -> NetworkPolicy:
    """A container's network label back into its policy, else ``PolicyError`` saying what is wrong."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as e:
        raise PolicyError(f"the label is not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("v") != LABEL_VERSION:
        raise PolicyError(f"the label is not a version-{LABEL_VERSION} network policy: {text[:200]!r}")
    port = data.get("hub_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PolicyError(f"hub_port: {port!r} is not a port")
    if data.get("egress") not in EGRESS_MODES:
        raise PolicyError(f"egress: {data.get('egress')!r} is not one of {', '.join(EGRESS_MODES)}")
    return NetworkPolicy(
        hub_port=port, egress=data["egress"], allow=_networks(data.get("allow", []), "allow"),
        peers=_networks(data.get("peers", []), "peers"),
    )


@dataclass(frozen=True)
class Surroundings:
    """What netguard learns of a starting container's place: addresses, never names."""

    hub: tuple[str, ...]  # the hub's (and its proxy's) addresses the container sees
    dns: tuple[str, ...]  # the DNS servers its resolver asks (the host's, or the engine's upstream ones)
    own_networks: tuple[str, ...]  # the subnets of the networks it is on (other users live there)
    host: tuple[str, ...]  # the host's own addresses


def ruleset(policy: NetworkPolicy, around: Surroundings) -> str:
    """The ``iptables-restore`` input for the container's filter table (the whole table: nothing of
    the engine's lives there; its DNS redirect is in the nat table, untouched)."""
    lines = ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT DROP [0:0]"]
    # in: loopback, replies, the hub and its proxy on any port, session peers; the rest refused
    lines += ["-A INPUT -i lo -j ACCEPT", "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    lines += [f"-A INPUT -s {s} -j ACCEPT" for s in (*around.hub, *policy.peers)]
    lines += ["-A INPUT -p tcp -j REJECT --reject-with tcp-reset", "-A INPUT -j REJECT"]
    # out
    lines += ["-A OUTPUT -o lo -j ACCEPT", "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for server in around.dns:  # port 53 only: on Google Cloud the metadata address is the resolver too
        lines += [f"-A OUTPUT -d {server} -p udp --dport 53 -j ACCEPT", f"-A OUTPUT -d {server} -p tcp --dport 53 -j ACCEPT"]
    lines.append(f"-A OUTPUT -d {METADATA} -j REJECT")
    lines += [f"-A OUTPUT -d {h} -p tcp --dport {policy.hub_port} -j ACCEPT" for h in around.hub]
    # the host's own addresses before the peers: a group network's gateway is the host's too
    lines += [f"-A OUTPUT -d {a} -j REJECT" for a in around.host]
    lines += [f"-A OUTPUT -d {p} -j ACCEPT" for p in policy.peers]
    lines += [f"-A OUTPUT -d {n} -j REJECT" for n in around.own_networks]
    if policy.egress != "denied":
        lines += [f"-A OUTPUT -d {a} -j ACCEPT" for a in policy.allow]
    if policy.egress == "allowed":
        lines += [f"-A OUTPUT -d {r} -j REJECT" for r in PRIVATE_RANGES]
        lines.append("-A OUTPUT -j ACCEPT")
    else:
        lines += ["-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset", "-A OUTPUT -j REJECT"]
    lines += ["COMMIT", ""]
    return "\n".join(lines)


# IPv6: the loopback only (the users' networks give containers no IPv6 route; should an engine do,
# nothing passes either way)
RULESET_V6 = "\n".join([
    "*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT DROP [0:0]",
    "-A INPUT -i lo -j ACCEPT", "-A OUTPUT -o lo -j ACCEPT", "COMMIT", "",
])
