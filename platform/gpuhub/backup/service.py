"""``backup``: the running hub's state into one archive; ``restore``: an archive onto a hub that is not
running (a fresh machine, or this one after a loss). Run in the hub's container (it has the hub's data
volume and the engine's socket): ``scripts/backup`` and ``scripts/restore`` do it with docker-compose.

Consistency while servers run: the database is copied with SQLite's online backup API (a snapshot of
one moment, however the hub writes meanwhile); each volume is copied while the containers that mount
it are paused (``docker pause``: their processes freeze for the seconds of the copy, then go on), so
every home is a copy of one moment. Homes and the database do not refer to each other's contents,
so copies of different moments restore to a working site.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import jupyterhub

from ..config.schema import Settings, parse_settings
from ..contract import utcnow
from ..policy.containers import course_volume_name, home_volume_name
from . import archive as a
from .volumes import VolumeFiles

log = logging.getLogger("gpuhub.backup")
STATE_SKIPPED = ("jupyterhub-proxy.pid",)  # per-process, remade at start
SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")  # files SQLite keeps beside a database
EDGE_VOLUME = "edge-data"  # docker-compose.yml's volume of the edge (its local CA, ACME certificates)


def sqlite_path(db_url: str) -> Path:
    """The file of a ``sqlite:///`` URL (``[hub] db_url``); a ``BackupError`` for any other database."""
    if not db_url.startswith("sqlite:///"):
        raise a.BackupError(
            "[hub] db_url is not SQLite: `gpuhub backup` copies SQLite databases only; back up PostgreSQL with pg_dump"
            " (docs/admin.md, \"Backup and restore\")"
        )
    return Path(db_url.removeprefix("sqlite:///"))


@dataclass
class Place:
    """Where this hub keeps things: its database file, its state folder, its compose project."""

    database: Path
    state_dir: Path
    project: str  # "" outside compose: no edge volume
    own_id: str  # this process's container ("" outside a container)
    image: str  # for the helper containers

    @classmethod
    def of(cls, settings: Settings, client) -> Place:
        """This hub's place, seen from inside its container (the hub's, or a one-off of the same image)."""
        try:
            own = client.inspect_container(socket.gethostname())
        except Exception as e:  # docker-py raises several types: not found, no engine
            raise a.BackupError(
                f"run this in the hub's container, which has the hub's data and the engine's socket ({e}):"
                " bash scripts/backup, bash scripts/restore (docs/admin.md, \"Backup and restore\")"
            ) from None
        project = (own["Config"].get("Labels") or {}).get("com.docker.compose.project", "")
        state_dir = Path(settings.hub.state_dir or ".")
        return cls(sqlite_path(settings.hub.db_url).resolve(), state_dir, project, own["Id"], own["Image"])

    @property
    def edge_volume(self) -> str:
        return f"{self.project}_{EDGE_VOLUME}" if self.project else ""


def database_snapshot(source: Path, target: Path) -> tuple[list[str], list[str]]:
    """A consistent copy of the hub's SQLite database (the online backup API); the user and session
    names it holds."""
    if not source.is_file():
        raise a.BackupError(f"the hub's database {source} does not exist: is [hub] db_url the running hub's?")
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        users = [row[0] for row in dst.execute("SELECT name FROM users ORDER BY name")]
        try:
            sessions = [row[0] for row in dst.execute("SELECT name FROM gpuhub_sessions ORDER BY name")]
        except sqlite3.OperationalError:  # a hub that never ran gpuhub's migrations
            sessions = []
    return users, sessions


def backup(settings: Settings, to_dir: Path, client, site_dir: Path, clock: Callable[[], datetime] = utcnow,
           place: Place | None = None, say: Callable[[str], None] = print) -> Path:
    """The archive of the hub ``settings`` describe, with the site files of ``site_dir``, into ``to_dir``."""
    place = place or Place.of(settings, client)
    files = VolumeFiles(client, place.image)
    to_dir.mkdir(parents=True, exist_ok=True)
    created = clock()
    target = to_dir / a.archive_name(created)
    partial = target.with_suffix(".partial")
    with tempfile.TemporaryDirectory(dir=to_dir, prefix=".gpuhub-backup-") as work:
        snapshot = Path(work) / "jupyterhub.sqlite"
        users, sessions = database_snapshot(place.database, snapshot)
        manifest = a.Manifest(created.isoformat(), version("gpuhub"), jupyterhub.__version__, "sqlite", len(users))
        wanted = [(home_volume_name(settings, u), "home") for u in users]
        wanted += [(course_volume_name(settings, s), "course") for s in sessions]
        if place.edge_volume:
            wanted.append((place.edge_volume, "edge"))
        for volume, role in wanted:
            if files.exists(volume):
                manifest.volumes[volume] = {"role": role, "labels": files.labels(volume)}
        with _removed_on_failure(partial), open(partial, "wb") as out, tarfile.open(fileobj=out, mode="w:") as tar:
            _add_file(tar, manifest, a.DATABASE, snapshot)
            for path in sorted(place.state_dir.iterdir()) if place.state_dir.is_dir() else []:
                if path.is_file() and not _is_database_file(path, place.database) and path.name not in STATE_SKIPPED:
                    _add_file(tar, manifest, a.DATA_PREFIX + path.name, path)
            for name, path in site_files(site_dir):
                _add_file(tar, manifest, a.SITE_PREFIX + name, path)
            for volume in manifest.volumes:
                spool = Path(work) / "volume.tar"
                with paused(client, files.users(volume, running_only=True), say):
                    with open(spool, "wb") as copy:
                        files.export(volume, copy)
                _add_file(tar, manifest, a.volume_member(volume), spool)
                spool.unlink()
            a.add_manifest(tar, manifest)
        partial.rename(target)
    say(f"gpuhub backup: {target.name}: the database ({len(users)} users), {len(manifest.volumes)} volume(s),"
        f" {sum(m['size'] for m in manifest.members.values()) / 1024**2:.1f} MiB")
    return target


@contextlib.contextmanager
def _removed_on_failure(path: Path):
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def site_files(folder: Path) -> list[tuple[str, Path]]:
    """``settings.toml`` and ``jupyterhub_config.d/*.py`` of the site folder, as (archive name, path)."""
    found = []
    if (folder / "settings.toml").is_file():
        found.append(("settings.toml", folder / "settings.toml"))
    drop_ins = folder / "jupyterhub_config.d"
    if drop_ins.is_dir():
        found += [(f"jupyterhub_config.d/{p.name}", p) for p in sorted(drop_ins.glob("*.py")) if p.is_file()]
    return found


def _is_database_file(path: Path, database: Path) -> bool:
    return path.resolve() in (database, *_companions(database))


def _companions(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in SQLITE_COMPANIONS]


def _add_file(tar: tarfile.TarFile, manifest: a.Manifest, name: str, path: Path) -> None:
    with open(path, "rb") as source:
        stat = os.fstat(source.fileno())
        a.add_member(tar, manifest, name, source, stat.st_size, stat.st_mtime)


@contextlib.contextmanager
def paused(client, containers: list[dict], say: Callable[[str], None]):
    """Pause the running ``containers`` (a volume's users) while the block copies the volume."""
    done, started = [], time.monotonic()
    try:
        for c in containers:
            client.pause(c["Id"])
            done.append(c)
        yield
    finally:
        for c in done:
            with contextlib.suppress(Exception):
                client.unpause(c["Id"])
        for c in done:
            say(f"gpuhub backup: paused {c['Names'][0].lstrip('/')} for {time.monotonic() - started:.1f} s while its volume was copied")


def restore(archive_path: Path, settings: Settings, client, replace: bool = False, place: Place | None = None,
            say: Callable[[str], None] = print) -> a.Manifest:
    """Check the whole archive, refuse while a hub of this site runs or where restoring would overwrite
    state (unless ``replace``), then write the database, the state files and every volume. Where they
    go: the archive's own settings (the site's, which ``scripts/restore`` puts back), else ``settings``."""
    manifest = a.verify(str(archive_path))
    place = place or Place.of(settings_in(archive_path) or settings, client)
    files = VolumeFiles(client, place.image)
    _refuse_while_a_hub_runs(client, place)
    problems = []
    if place.database.exists() and place.database.stat().st_size > 0 and not replace:
        problems.append(f"the hub's database {place.database} exists")
    for volume in manifest.volumes:
        if not files.exists(volume):
            continue
        in_use = [c["Names"][0].lstrip("/") for c in files.users(volume)]
        if in_use:
            problems.append(f"the volume {volume} is mounted by {', '.join(in_use)} (remove those containers first)")
        elif not replace and not files.is_empty(volume):
            problems.append(f"the volume {volume} exists and has files")
    if problems:
        raise a.BackupError("not restoring: " + "; ".join(problems) + ". Nothing was changed."
                            + ("" if replace else " Pass --replace to overwrite what exists."))
    with tarfile.open(archive_path, mode="r:") as tar:
        for info in tar:
            if info.name == a.DATABASE:
                for stale in _companions(place.database):
                    stale.unlink(missing_ok=True)
                _write_atomically(tar.extractfile(info), place.database)
            elif info.name.startswith(a.DATA_PREFIX):
                _write_atomically(tar.extractfile(info), place.state_dir / info.name.removeprefix(a.DATA_PREFIX))
            elif info.name.startswith(a.VOLUME_PREFIX):
                volume = info.name.removeprefix(a.VOLUME_PREFIX).removesuffix(".tar")
                if files.exists(volume):
                    files.remove(volume)
                files.create(volume, manifest.volumes.get(volume, {}).get("labels", {}))
                files.load(volume, tar.extractfile(info))
    roles = [v["role"] for v in manifest.volumes.values()]
    say(f"gpuhub restore: {archive_path.name} (taken {manifest.created}): the database ({manifest.users} users),"
        f" {roles.count('home')} home(s), {roles.count('course')} course folder(s)"
        f"{', the edge' + chr(39) + 's certificates' if 'edge' in roles else ''}")
    return manifest


def settings_in(archive_path: Path) -> Settings | None:
    with tarfile.open(archive_path, mode="r:") as tar:
        try:
            member = tar.extractfile(a.SITE_PREFIX + "settings.toml")
        except KeyError:
            return None
        return parse_settings(member.read().decode(), source="the backup's site/settings.toml")


def _refuse_while_a_hub_runs(client, place: Place) -> None:
    filters = {"label": ["com.docker.compose.service=hub"] + ([f"com.docker.compose.project={place.project}"] if place.project else []),
               "status": "running"}
    running = [c for c in client.containers(filters=filters) if c["Id"] != place.own_id
               and (c.get("Labels") or {}).get("com.docker.compose.oneoff") != "True"]
    if running:
        raise a.BackupError(f"not restoring: the hub runs ({running[0]['Names'][0].lstrip('/')}); stop it first (bash scripts/down). Nothing was changed.")


def _write_atomically(source, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restoring")
    with open(partial, "wb") as out:
        while chunk := source.read(a.CHUNK):
            out.write(chunk)
    os.chmod(partial, 0o600)
    partial.replace(target)
