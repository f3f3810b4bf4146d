"""Network isolation's pure parts: ``[network]``, the policy label, the rules (read by a small evaluator of
the iptables subset they use: first match wins, as the kernel reads a chain), and what netguard parses
(resolv.conf, fib_trie, the hub's addresses). The rules on real containers: tests/reliability/test_network.py."""

from __future__ import annotations

import ipaddress
import os
import json
import shlex

from pathlib import Path

import pytest

from gpuhub import contract as c
from gpuhub.config.schema import parse_settings
from gpuhub.config.sections import SettingsError
from gpuhub.netguard.places import dns_servers, hub_addresses, local_addresses, nameservers, own_networks, surroundings
from gpuhub.policy import containers
from gpuhub.policy.services import netguard_spec, service_parts
from gpuhub.policy.network import RULESET_V6, free_subnet, NetworkPolicy, PolicyError, Surroundings, parse_label, policy_for, ruleset


def settings_with(text: str, base: str):
    return parse_settings(base + "\n" + text)


# --- [network] ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, key",
    [
        ('egress = "allowlist"', "network.egress_allow"),
        ('egress = "denied"\negress_allow = ["10.1.0.0/16"]', "network.egress_allow"),
        ('egress = "open"', "network.egress"),
        ('egress_allow = ["10.1.0.0/33"]', "network.egress_allow"),
        ('egress_allow = ["fd00::/8"]', "network.egress_allow"),
        ('egress_allow = ["10.0.0.0/8", 7]', "network.egress_allow"),
        ('isolation = "yes"', "network.isolation"),
        ("rules_wait = 0", "network.rules_wait"),
        ("rules_wait = 601", "network.rules_wait"),
        ("block_metadata = false", "network"),
    ],
)
def test_bad_network_settings_are_refused_naming_the_key(base_settings_text, table, key):
    with pytest.raises(SettingsError) as refused:
        settings_with(f"[network]\n{table}", base_settings_text)
    assert key in str(refused.value)
    assert "Accepted" in str(refused.value)


def test_network_settings_and_their_defaults(base_settings_text):
    default = parse_settings(base_settings_text).network
    assert (default.isolation, default.egress, default.egress_allow, default.rules_wait) == (True, "allowed", [], 30)
    s = settings_with('[network]\negress = "allowlist"\negress_allow = ["10.1.2.3", "192.168.7.0/24"]', base_settings_text)
    assert s.network.egress_allow == ["10.1.2.3/32", "192.168.7.0/24"]


# --- the label ------------------------------------------------------------------------------------------


def test_a_policy_survives_its_label():
    policy = NetworkPolicy(hub_port=8081, egress="allowlist", allow=("10.1.0.0/16",), peers=("10.99.0.0/24",))
    assert parse_label(policy.label()) == policy


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "not JSON"),
        ("[]", "version-1"),
        ('{"v": 2, "hub_port": 8081, "egress": "allowed"}', "version-1"),
        ('{"v": 1, "egress": "allowed"}', "hub_port"),
        ('{"v": 1, "hub_port": 70000, "egress": "allowed"}', "hub_port"),
        ('{"v": 1, "hub_port": true, "egress": "allowed"}', "hub_port"),
        ('{"v": 1, "hub_port": 8081, "egress": "open"}', "egress"),
        ('{"v": 1, "hub_port": 8081, "egress": "allowed", "allow": ["x"]}', "allow"),
        ('{"v": 1, "hub_port": 8081, "egress": "allowed", "allow": "10.0.0.0/8"}', "allow"),
        ('{"v": 1, "hub_port": 8081, "egress": "allowed", "peers": [7]}', "peers"),
    ],
)
def test_a_label_netguard_cannot_use_is_refused_saying_why(text, says):
    with pytest.raises(PolicyError) as refused:
        parse_label(text)
    assert says in str(refused.value)


def test_the_container_carries_its_policy_and_waits_for_it_only_with_isolation(base_settings_text):
    for table in ("", '[engine]\nkind = "swarm"'):  # one host and a Swarm alike
        s = settings_with(table, base_settings_text)
        spec = containers.build(s, s.profile("cpu-small"), "alice")
        label = json.loads(spec.create_kwargs["labels"][c.NETWORK_LABEL])
        assert label == {"v": 1, "hub_port": 8081, "egress": "allowed", "allow": [], "peers": []}
        assert spec.environment[c.NETWORK_WAIT_ENV] == "30"
        # on a Swarm the label is the task's container's (netguard reads the container), not only the service's
        assert service_parts(spec, "node-1").container["labels"][c.NETWORK_LABEL] == spec.create_kwargs["labels"][c.NETWORK_LABEL]
    s = settings_with("[network]\nisolation = false", base_settings_text)
    spec = containers.build(s, s.profile("cpu-small"), "alice")
    assert c.NETWORK_LABEL not in spec.create_kwargs["labels"] and c.NETWORK_WAIT_ENV not in spec.environment
    assert policy_for(s) is None


@pytest.mark.parametrize(
    "table, port",
    [
        ('hub_connect_url = "http://hub:9091"', 9091),
        ('hub_bind_url = "http://0.0.0.0:8082"', 8082),
        ('hub_bind_url = "http://10.0.0.5"', 80),  # no port: the scheme's, as JupyterHub reads it
        ('hub_bind_url = "https://10.0.0.5"', 443),
    ],
)
def test_the_hub_port_comes_from_the_url_users_reach_it_by(base_settings_text, table, port):
    assert policy_for(settings_with(f"[hub]\n{table}", base_settings_text)).hub_port == port


# --- the rules, evaluated ---------------------------------------------------------------------------------


def verdict(rules: str, chain: str, *, peer: str, port: int = 443, proto: str = "tcp", lo: bool = False, established: bool = False) -> str:
    """What ``chain`` (INPUT: ``peer`` is the source; OUTPUT: the destination) does with a packet: the
    target of the first rule that matches, else the chain's policy."""
    policy = next(line.split()[1] for line in rules.splitlines() if line.startswith(f":{chain} "))
    for line in rules.splitlines():
        if not line.startswith(f"-A {chain} "):
            continue
        words = shlex.split(line)[2:]
        options = dict(zip(words[::2], words[1::2]))
        address = options.get("-s" if chain == "INPUT" else "-d")
        if address and ipaddress.ip_address(peer) not in ipaddress.ip_network(address):
            continue
        if "-p" in options and options["-p"] != proto:
            continue
        if "--dport" in options and int(options["--dport"]) != port:
            continue
        if ("-i" in options or "-o" in options) and not lo:
            continue
        if "--ctstate" in options and not established:
            continue
        return options["-j"]
    return policy


HUB, GATEWAY, OTHER_USER, DNS = "172.20.0.2", "172.20.0.1", "172.20.0.7", "10.0.0.2"
AROUND = Surroundings(hub=(HUB,), dns=(DNS,), own_networks=("172.20.0.0/16",), host=("192.0.2.10",))


@pytest.mark.parametrize(
    "egress, allow, chain, peer, port, proto, expected",
    [
        # in: the hub and its proxy on any port; nobody else
        ("allowed", (), "INPUT", HUB, 8888, "tcp", "ACCEPT"),
        ("allowed", (), "INPUT", HUB, 6006, "tcp", "ACCEPT"),
        ("allowed", (), "INPUT", OTHER_USER, 9000, "tcp", "REJECT"),
        ("allowed", (), "INPUT", GATEWAY, 8888, "tcp", "REJECT"),
        ("allowed", (), "INPUT", "203.0.113.5", 8888, "tcp", "REJECT"),
        # out: the hub's API only, DNS, never the metadata address, other users, the host or private ranges
        ("allowed", (), "OUTPUT", HUB, 8081, "tcp", "ACCEPT"),
        ("allowed", (), "OUTPUT", HUB, 5432, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", DNS, 53, "udp", "ACCEPT"),
        ("allowed", (), "OUTPUT", DNS, 53, "tcp", "ACCEPT"),
        ("allowed", (), "OUTPUT", DNS, 80, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "169.254.169.254", 80, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", OTHER_USER, 9000, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", GATEWAY, 2375, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "192.0.2.10", 22, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "10.9.9.9", 443, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "192.168.1.1", 443, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "100.64.0.1", 443, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "203.0.113.5", 443, "tcp", "ACCEPT"),
        ("allowed", (), "OUTPUT", "203.0.113.5", 123, "udp", "ACCEPT"),
        # egress_allow opens a private network, never the metadata address, the host or other users
        ("allowed", ("10.20.0.0/16",), "OUTPUT", "10.20.1.1", 3128, "tcp", "ACCEPT"),
        ("allowed", ("169.254.0.0/16",), "OUTPUT", "169.254.169.254", 80, "tcp", "REJECT"),
        ("allowed", (), "OUTPUT", "169.254.169.254", 53, "udp", "REJECT"),  # not a resolver of this container
        ("allowed", ("172.16.0.0/12",), "OUTPUT", OTHER_USER, 9000, "tcp", "REJECT"),
        ("allowlist", ("10.20.0.0/16",), "OUTPUT", "10.20.1.1", 3128, "tcp", "ACCEPT"),
        ("allowlist", ("10.20.0.0/16",), "OUTPUT", "203.0.113.5", 443, "tcp", "REJECT"),
        ("allowlist", ("10.20.0.0/16",), "OUTPUT", HUB, 8081, "tcp", "ACCEPT"),
        ("allowlist", ("10.20.0.0/16",), "OUTPUT", DNS, 53, "udp", "ACCEPT"),
        ("denied", (), "OUTPUT", "203.0.113.5", 443, "tcp", "REJECT"),
        ("denied", (), "OUTPUT", HUB, 8081, "tcp", "ACCEPT"),
        ("denied", (), "OUTPUT", DNS, 53, "udp", "ACCEPT"),
    ],
)
def test_the_rules_allow_what_the_policy_says_and_nothing_else(egress, allow, chain, peer, port, proto, expected):
    rules = ruleset(NetworkPolicy(hub_port=8081, egress=egress, allow=allow), AROUND)
    assert verdict(rules, chain, peer=peer, port=port, proto=proto) == expected


def test_replies_and_the_loopback_pass_and_the_metadata_rule_comes_before_any_accept():
    rules = ruleset(NetworkPolicy(hub_port=8081, allow=("169.254.0.0/16",)), AROUND)
    assert verdict(rules, "INPUT", peer=OTHER_USER, established=True) == "ACCEPT"  # a reply to the user's own connection
    assert verdict(rules, "INPUT", peer="127.0.0.1", lo=True) == "ACCEPT"
    assert verdict(rules, "OUTPUT", peer="127.0.0.11", port=53, proto="udp", lo=True) == "ACCEPT"  # the engine's resolver
    out = [line for line in rules.splitlines() if line.startswith("-A OUTPUT") and "ESTABLISHED" not in line and "-o lo" not in line]
    metadata = out.index("-A OUTPUT -d 169.254.169.254/32 -j REJECT")
    assert all("--dport 53 " in line for line in out[:metadata])  # only DNS before it (GCP's resolver is that address)
    for table in (rules, RULESET_V6):
        assert {":INPUT DROP [0:0]", ":OUTPUT DROP [0:0]", ":FORWARD DROP [0:0]", "COMMIT"} <= set(table.splitlines())


def test_session_peers_reach_each_other_and_nobody_else_does():
    around = Surroundings(hub=(HUB,), dns=(DNS,), own_networks=("172.20.0.0/16", "10.99.0.0/24"), host=("192.0.2.10", "10.99.0.1"))
    rules = ruleset(NetworkPolicy(hub_port=8081, peers=("10.99.0.0/24",)), around)
    assert verdict(rules, "INPUT", peer="10.99.0.5", port=9000) == "ACCEPT"
    assert verdict(rules, "OUTPUT", peer="10.99.0.5", port=9000) == "ACCEPT"
    assert verdict(rules, "INPUT", peer=OTHER_USER, port=9000) == "REJECT"
    assert verdict(rules, "OUTPUT", peer="10.99.0.1", port=22) == "REJECT"  # the group network's gateway is the host


# --- what netguard reads --------------------------------------------------------------------------------

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 172.17.0.0
        /16 link UNICAST
     |-- 172.17.0.1
        /32 host LOCAL
     |-- 10.128.0.17
        /32 host LOCAL
     |-- 172.17.255.255
        /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 172.17.0.1
        /32 host LOCAL
"""


def test_the_hosts_own_addresses_come_from_fib_trie():
    assert local_addresses(FIB_TRIE) == ["172.17.0.1", "10.128.0.17"]


def test_nameservers_and_the_dns_servers_a_container_reaches():
    assert nameservers("# x\nnameserver 10.0.0.2\nnameserver fe80::1\nnameserver bogus\nsearch lan\n") == ["10.0.0.2"]
    embedded = "nameserver 127.0.0.11\noptions ndots:0\n"
    assert dns_servers(embedded, "nameserver 10.0.0.2\n") == ["10.0.0.2"]  # the engine's resolver asks the host's
    assert dns_servers("nameserver 8.8.8.8\n", "nameserver 10.0.0.2\n") == ["8.8.8.8"]  # the default bridge: its own
    assert dns_servers(embedded, "nameserver 127.0.0.53\n") == []


def inspected(**networks) -> dict:
    return {"NetworkSettings": {"Networks": {
        name: {"NetworkID": f"id-{name}", "IPAddress": ip, "IPPrefixLen": 16, "Gateway": gw} for name, (ip, gw) in networks.items()
    }}}


def test_the_hub_is_the_hub_containers_address_on_a_shared_network_or_told_to_be_the_host():
    user = inspected(gpuhub=("172.20.0.7", "172.20.0.1"))
    hub = inspected(gpuhub=("172.20.0.2", "172.20.0.1"), front=("172.30.0.2", "172.30.0.1"))
    assert hub_addresses(user, [hub]) == ["172.20.0.2"]
    assert hub_addresses(user, [inspected(other=("172.40.0.2", "172.40.0.1"))]) == []  # never the gateway by default
    assert hub_addresses(user, []) == []  # the hub's container is down: nobody is let in meanwhile
    assert hub_addresses(user, [], hub_on_host=True) == ["172.20.0.1"]  # the test harness's hub process
    assert hub_addresses(user, [hub], hub_on_host=True) == ["172.20.0.2"]  # a composed hub there: its address, whoever asks


@pytest.mark.parametrize(
    "given, hubs, expected",
    [
        (("10.214.1.5",), [], ["10.214.1.5"]),  # a Swarm worker: the hub told its overlay address
        (("10.214.1.5", "172.30.0.2"), [], ["10.214.1.5"]),  # only the addresses on the container's own networks
        (("10.99.0.5",), [], []),  # none on its networks: not this hub's container, left alone
        (("10.214.1.5",), [inspected(gpuhub=("10.214.1.9", "10.214.1.1"))], ["10.214.1.9"]),  # the hub's node: its container wins
    ],
)
def test_on_a_swarm_node_the_hub_is_the_address_the_hub_told(given, hubs, expected):
    user = {"NetworkSettings": {"Networks": {  # a task's container: its overlay (inspect lists no docker_gwbridge)
        "gpuhub": {"NetworkID": "id-gpuhub", "IPAddress": "10.214.1.7", "IPPrefixLen": 24, "Gateway": ""},
        "other": {"NetworkID": "id-other", "IPAddress": "10.215.0.7", "IPPrefixLen": 24, "Gateway": ""},
    }}}
    assert hub_addresses(user, hubs, given=given) == expected
    assert own_networks(user) == ["10.214.1.0/24", "10.215.0.0/24"]


def test_a_swarm_nodes_netguard_counts_the_other_nodes_as_the_host(tmp_path):
    pid = os.getpid()  # a container whose process is this one: its resolv.conf and this namespace's addresses are real
    container = {"State": {"Pid": pid}, "NetworkSettings": {"Networks": {
        "gpuhub": {"NetworkID": "id-gpuhub", "IPAddress": "10.214.1.7", "IPPrefixLen": 24, "Gateway": ""}}}}
    around = surroundings(container, [], Path("/proc"), given=("10.214.1.5",), other_hosts=("10.213.0.10", "10.213.0.12"))
    assert around.hub == ("10.214.1.5",)
    assert {"10.213.0.10", "10.213.0.12"} <= set(around.host) and set(local_addresses(Path("/proc/self/net/fib_trie").read_text())) <= set(around.host)
    rules = ruleset(NetworkPolicy(hub_port=8081, allow=("10.0.0.0/8",)), around)
    assert verdict(rules, "OUTPUT", peer="10.213.0.12", port=22) == "REJECT"  # another node's SSH, even with a private range allowed
    assert verdict(rules, "OUTPUT", peer="10.214.1.5", port=8081) == "ACCEPT"


def test_the_swarm_netguard_service_runs_on_every_other_node_with_the_hubs_addresses_and_little_else():
    spec = netguard_spec("registry:5000/gpuhub/pytorch-cuda:cpu", ("10.214.1.5",), "/srv/{node}/docker.sock", "node-of-the-hub",
                         ("10.213.0.10", "10.213.0.11"))
    assert spec.constraints == ("node.id!=node-of-the-hub",)  # docker-compose.yml's netguard serves the hub's node
    assert spec.command[3:5] == ("-m", "gpuhub.netguard") and spec.command[0] == "tini"
    assert spec.command[-3:] == ("--hub-address=10.214.1.5", "--node-address=10.213.0.10", "--node-address=10.213.0.11")
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/var/run/docker.sock"].source == "/srv/{{.Node.Hostname}}/docker.sock"  # a Swarm template: each node's own
    assert mounts["/hostproc"].read_only and mounts["/hostrun"].read_only and not mounts["/var/run/docker.sock"].read_only
    assert set(spec.cap_add) == {"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}
    assert netguard_spec("i", ("10.214.1.6",), "/var/run/docker.sock", "n").command != spec.command  # a new address: an update


def test_the_nodes_docker_socket_setting(base_settings_text):
    s = settings_with('[engine]\nkind = "swarm"\nnode_docker_socket = "/run/{node}/docker.sock"', base_settings_text)
    assert s.engine.node_docker_socket == "/run/{node}/docker.sock"
    assert parse_settings(base_settings_text).engine.node_docker_socket == "/var/run/docker.sock"
    for bad in ("docker.sock", "/run/../docker.sock"):
        with pytest.raises(SettingsError, match="engine.node_docker_socket"):
            settings_with(f'[engine]\nnode_docker_socket = "{bad}"', base_settings_text)


# --- a session's group work ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pool, taken, expected",
    [
        ("10.199.0.0/16", [], "10.199.0.0/24"),
        ("10.199.0.0/16", ["10.199.0.0/24", "172.17.0.0/16"], "10.199.1.0/24"),
        ("10.199.0.0/16", ["10.199.0.0/23"], "10.199.2.0/24"),  # a wider network overlaps two
        ("10.199.0.0/16", ["10.0.0.0/8"], None),  # the whole range is inside another network
        ("10.199.0.0/24", ["10.199.0.128/25"], None),  # no /24 left
        ("10.199.0.0/22", ["fd00::/64", "10.199.0.0/24"], "10.199.1.0/24"),  # IPv6 subnets ignored
    ],
)
def test_a_group_network_takes_the_first_free_24_of_its_range(pool, taken, expected):
    assert free_subnet(pool, taken) == expected


@pytest.mark.parametrize("value", ["10.199.0.0/25", "10.199.0.300/16", "fd00::/48", "ten"])
def test_bad_group_subnets_are_refused_naming_the_key(base_settings_text, value):
    with pytest.raises(SettingsError, match="sessions.group_subnets"):
        settings_with(f'[sessions]\ngroup_subnets = "{value}"', base_settings_text)


def test_group_subnets_default_to_the_engines_pools_and_take_a_range(base_settings_text):
    assert parse_settings(base_settings_text).sessions.group_subnets == ""
    assert settings_with('[sessions]\ngroup_subnets = "10.199.0.5/16"', base_settings_text).sessions.group_subnets == "10.199.0.0/16"


def test_group_work_gets_a_network_of_its_own_and_its_members_rules_name_it(base_settings_text):
    from datetime import datetime

    from gpuhub.policy.sessions import Session, Window

    s = parse_settings(base_settings_text)
    window = (Window(datetime(2026, 12, 1, 9), datetime(2026, 12, 1, 11)),)
    lab = Session("lab1", "cpu-small", window, group_work=True)
    assert containers.group_network_name(s, lab) == "gpuhub-group-lab1"
    for other in (None, Session("lab2", "cpu-small", window)):
        assert containers.group_network_name(s, other) == ""
    for table in ("[network]\nisolation = false", '[engine]\nkind = "swarm"'):
        assert containers.group_network_name(settings_with(table, base_settings_text), lab) == ""  # nothing to open
    spec = containers.build(s, s.profile("cpu-small"), "alice", session=lab, network_peers=("10.99.0.0/24",))
    assert json.loads(spec.create_kwargs["labels"][c.NETWORK_LABEL])["peers"] == ["10.99.0.0/24"]
    with pytest.raises(SettingsError, match="sessions.group_network"):
        settings_with('[sessions]\ngroup_network = "lab-net"', base_settings_text)


def test_a_start_is_named_by_its_first_process_start_time_whatever_its_command_name():
    from gpuhub.netguard.places import process_start

    stat = "1 (tini) S 0 1 1 0 -1 4194560 722 0 0 0 1 0 0 0 20 0 1 0 5012345 2527232 221 18446744073709551615"
    assert process_start(stat) == "5012345"
    assert process_start(stat.replace("(tini)", "(a) b (c)")) == "5012345"  # a name with spaces and parentheses
