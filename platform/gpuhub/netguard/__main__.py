"""``python -m gpuhub.netguard [--proc /hostproc]``: gpuhub-netguard on this Docker host (root, or the
capabilities NET_ADMIN, SYS_ADMIN and SYS_PTRACE; the engine's socket; the engine's network namespace).
docker-compose.yml runs it as the ``netguard`` service; see gpuhub.netguard."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shutil
import sys
from pathlib import Path

import docker
import docker.errors

from .guard import NetGuard, log


def _address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def main() -> int:
    parser = argparse.ArgumentParser(prog="gpuhub-netguard", description=__doc__.splitlines()[0])
    parser.add_argument("--proc", default="/proc", help="the host's /proc as this process sees it (default /proc)")
    parser.add_argument(
        "--hub-on-host", action="store_true",
        help="the hub runs on the host (a process, as the test harness runs it), not in a container labelled org.gpuhub.role=hub:"
        " users' containers reach it at their networks' gateways",
    )
    parser.add_argument(
        "--hub-address", action="append", default=[], metavar="ADDRESS", type=_address,
        help="an address of the hub's container where that container runs on another engine (a Swarm node: the hub deploys"
        " netguard there with its addresses on the users' overlay); repeatable",
    )
    parser.add_argument(
        "--node-address", action="append", default=[], metavar="ADDRESS", type=_address,
        help="another Docker host's address (a Swarm's other nodes: the hub passes them), refused to users' containers"
        " as this host's own addresses are; repeatable",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s gpuhub-netguard] %(message)s")
    missing = [p for p in ("nsenter", "iptables-restore", "ip6tables-restore") if not shutil.which(p)]
    if missing:
        print(f"gpuhub-netguard: cannot start: {', '.join(missing)} not found (Debian: apt-get install iptables util-linux)", file=sys.stderr)
        return 2
    if not Path(args.proc, "self", "ns", "net").exists():
        print(f"gpuhub-netguard: cannot start: {args.proc} is not a /proc (no {args.proc}/self/ns/net)", file=sys.stderr)
        return 2
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as e:
        print(f"gpuhub-netguard: cannot start: the Docker engine does not answer ({e})", file=sys.stderr)
        return 2
    where = "on the host" if args.hub_on_host else f"at {', '.join(args.hub_address)}" if args.hub_address else "in its container"
    log.info("started; the host's /proc at %s; the hub %s", args.proc, where)
    NetGuard(client, Path(args.proc), hub_on_host=args.hub_on_host, hub_given=tuple(args.hub_address), other_hosts=tuple(args.node_address)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
