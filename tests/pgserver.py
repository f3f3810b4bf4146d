"""A throwaway PostgreSQL server from Debian's packages, on loopback, for the tests that need one.

    with PostgresServer() as pg:
        pg.create_database("gpuhub")      # -> "postgresql://gpuhub@127.0.0.1:<port>/gpuhub"
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.hubprocess import free_port


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self):
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (scripts/test does it)")
        # its own folder under /tmp: the server's account must reach it (pytest's tmp dirs are root-only)
        self.topdir = Path(tempfile.mkdtemp(prefix="gpuhub-pg-"))
        self.datadir = self.topdir / "data"
        self.port = free_port()
        # the server refuses to run as root: use Debian's postgres account when we are root
        self.user = "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name

    def _run(self, *args: str, check=True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.getuid() == 0:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True)

    def start(self) -> PostgresServer:
        if os.getuid() == 0:
            shutil.chown(self.topdir, self.user)
        self._run(str(self.bin / "initdb"), "-D", str(self.datadir), "-U", "gpuhub", "--auth=trust", "-E", "UTF8")
        return self.resume()

    def halt(self) -> None:
        """Stop the server, keeping its data (a database outage); ``resume()`` brings it back."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> PostgresServer:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.topdir / "server.log"), "-w",
            "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.datadir}",
            "start",
        )
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.topdir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "gpuhub", name)
        return f"postgresql://gpuhub@127.0.0.1:{self.port}/{name}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
