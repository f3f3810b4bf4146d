"""``python -m gpuhub.homecopy``: copy a home folder from one Swarm node to another, as the two halves
of a home move (``engine.swarm.SwarmEngine.move_home``). Standard library only; runs in a gpuhub
single-user image as the image's user, on the hub's overlay network.

    python -m gpuhub.homecopy receive --dir /home/jovyan --port 7077   (on the new node)
    python -m gpuhub.homecopy send --dir /home/jovyan --to NAME:7077    (on the old node)

The receiver empties its folder (a copy left there by an earlier move is stale), takes one tar
stream, unpacks it and exits 0; the sender streams the folder and exits 0. A broken stream fails the
receiver (a truncated tar does not unpack), and the hub then keeps the home where it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tarfile
import time


def _empty(folder: str) -> None:
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def receive(folder: str, port: int, timeout: float) -> int:
    with socket.create_server(("", port)) as server:
        server.settimeout(timeout)
        connection, peer = server.accept()
        with connection, connection.makefile("rb") as stream:
            _empty(folder)
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                # "tar": no absolute paths, nothing outside the folder, no device files (Pythons that have it)
                archive.extractall(folder, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    count = sum(len(files) + len(dirs) for _, dirs, files in os.walk(folder))
    print(f"gpuhub-homecopy: received {count} entries from {peer[0]} into {folder}", flush=True)
    return 0


def send(folder: str, to: str, timeout: float) -> int:
    host, _, port = to.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:  # the receiver's task may start after this one
        try:
            connection = socket.create_connection((host, int(port)), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with connection, connection.makefile("wb") as stream:
        with tarfile.open(fileobj=stream, mode="w|") as archive:
            for name in sorted(os.listdir(folder)):
                archive.add(os.path.join(folder, name), arcname=name)
    print(f"gpuhub-homecopy: sent {folder} to {to}", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpuhub-homecopy")
    p.add_argument("action", choices=["receive", "send"])
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=7077)
    p.add_argument("--to", help="send: the receiver's NAME:PORT")
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args(argv)
    if args.action == "receive":
        return receive(args.dir, args.port, args.timeout)
    if not args.to:
        p.error("send needs --to NAME:PORT")
    return send(args.dir, args.to, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
