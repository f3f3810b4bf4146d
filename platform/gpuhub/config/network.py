"""Network isolation of users' containers: the ``[network]`` table (the rules: ``policy.network``; who
applies them in each container: ``gpuhub.netguard``)."""

from __future__ import annotations

import ipaddress

from traitlets import Bool, Enum, Integer, List, TraitError, Unicode, validate

from .sections import Section, SettingsError


GROUP_SUBNET_PREFIX = 24  # a session's group network ([sessions] group_subnets): up to 253 members, a class


def ipv4_network(text: str) -> str:
    """``text`` as an IPv4 network in CIDR form (``"10.20.0.0/16"``, a bare address is a /32), else
    ``TraitError`` saying what is wrong."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as e:
        raise TraitError(f"{text!r} is not an IPv4 address or network in CIDR form ({e})") from None
    if network.version != 4:
        raise TraitError(f"{text!r} is an IPv6 network: users' containers get no IPv6 route (only IPv4 CIDRs are accepted)")
    return str(network)


class Network(Section):
    section_help = """What users' containers may reach on the network, and what may reach them. With
    ``isolation`` on (the default) each server, batch job and SSH session container accepts connections
    only from the hub and its proxy (on any port the user opens: a TensorBoard behind the proxy works,
    another user's code cannot connect), and reaches only the hub's API, its DNS resolver and what
    ``egress`` allows; never another user's container, the host's own services (the engine, the
    database, SSH), private networks or the cloud's instance-metadata address (169.254.169.254). The
    rules live inside each container's own network namespace, where its non-root, capability-less
    processes cannot change them; ``gpuhub-netguard`` (docker-compose.yml's ``netguard`` service) puts
    them there as each container starts, and the container's program waits for them (a container whose
    rules did not come within ``rules_wait`` seconds stops, and its start fails naming why). On a Swarm
    the hub deploys netguard on every other node itself (``[engine] node_docker_socket``); see
    docs/security.md, "On the network"."""

    isolation = Bool(
        True,
        help="""Isolate users' containers as above. ``false`` only where something else isolates them
        (and say so in your site's security notes): every container can then reach every other one on
        the users' network and every address the host can. Example: ``true``.""",
    ).tag(accepted="true or false")

    egress = Enum(
        ["allowed", "allowlist", "denied"],
        default_value="allowed",
        help="""What users' code may reach beyond the hub: ``"allowed"`` (default): the internet (public
        addresses), but no private range (10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16) and none of
        the host's own addresses, plus ``egress_allow``; ``"allowlist"``: only ``egress_allow`` (e.g. a
        package mirror); ``"denied"``: nothing (an exam, a data enclave). DNS answers in every mode.
        Example: ``"allowlist"``.""",
    ).tag(accepted='"allowed", "allowlist" or "denied"')

    egress_allow = List(
        Unicode(),
        help="""IPv4 networks users' code may reach whatever ``egress`` says of the rest, private ones too
        (a site's package mirror, a shared dataset server): ``"allowed"`` adds them, ``"allowlist"``
        allows only them, ``"denied"`` refuses any. The instance-metadata address stays blocked
        whatever is listed. Example: ``["10.20.0.0/16", "203.0.113.7"]``.""",
    ).tag(accepted='a list of IPv4 addresses or CIDR networks, e.g. ["10.20.0.0/16"]')

    rules_wait = Integer(
        30,
        help="""How long a starting container waits for its network rules, in seconds, before it gives
        up (its start then fails, saying netguard did not answer): long enough for a loaded host,
        short enough that a stopped netguard is noticed at the first start. Example: ``60``.""",
        min=1,
        max=600,
    ).tag(accepted="seconds, from 1 to 600")

    @validate("egress_allow")
    def _validate_egress_allow(self, proposal):
        return [ipv4_network(text) for text in proposal["value"]]

    def check(self, root, where: str) -> None:
        if self.egress == "allowlist" and not self.egress_allow:
            raise SettingsError(
                f'{where}.egress_allow: empty with egress = "allowlist". Accepted: at least one IPv4 network,'
                ' or egress = "denied" for no egress at all',
                f"{where}.egress_allow",
            )
        if self.egress == "denied" and self.egress_allow:
            raise SettingsError(
                f'{where}.egress_allow: {self.egress_allow} with egress = "denied", which allows nothing.'
                ' Accepted: an empty list, or egress = "allowlist" to allow only these',
                f"{where}.egress_allow",
            )
