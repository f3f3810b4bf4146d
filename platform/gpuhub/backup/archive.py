"""A gpuhub backup archive: one uncompressed tar file, ``gpuhub-backup-<UTC time>.tar``, of

    hub/jupyterhub.sqlite            the hub's database (JupyterHub's and gpuhub's tables), a consistent copy
    hub/data/<name>                  the hub's other state files (cookie secret, the hub's tokens)
    site/settings.toml               the site's settings, and its jupyterhub_config.d/*.py drop-ins
    site/jupyterhub_config.d/<name>
    volumes/<volume>.tar             each volume's files (users' homes, course folders, the edge's CA)
    manifest.json                    last: when, what versions, every member's size and SHA-256

Checked whole before anything is restored (``verify``): every member the manifest names is there with
its size and checksum, and nothing else is. Pure: no Docker, no hub.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "hub/jupyterhub.sqlite"
DATA_PREFIX = "hub/data/"
SITE_PREFIX = "site/"
VOLUME_PREFIX = "volumes/"
CHUNK = 1 << 20
# what a member's name may be: our own prefixes, plain names (no "..", no absolute paths)
MEMBER_NAME = re.compile(r"^(hub/jupyterhub\.sqlite|hub/data/[\w.-]+|site/settings\.toml|site/jupyterhub_config\.d/[\w.-]+\.py|volumes/[\w.-]+\.tar)$")


class BackupError(RuntimeError):
    """A backup that cannot be made, or an archive that cannot be restored: the message says which
    part and what to do."""


def archive_name(when: datetime) -> str:
    return f"gpuhub-backup-{when.strftime('%Y%m%dT%H%M%SZ')}.tar"


def volume_member(volume: str) -> str:
    return f"{VOLUME_PREFIX}{volume}.tar"


@dataclass
class Manifest:
    created: str  # ISO 8601, UTC
    gpuhub_version: str
    jupyterhub_version: str
    database: str  # "sqlite"
    users: int
    volumes: dict[str, dict] = field(default_factory=dict)  # name -> {"role": "home"|"course"|"edge", "labels": {...}}
    members: dict[str, dict] = field(default_factory=dict)  # name -> {"size": int, "sha256": hex}
    format: int = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise BackupError(f"{MANIFEST}: format {raw.get('format')!r}; this gpuhub reads format {FORMAT}")
            return cls(**raw)
        except (ValueError, TypeError) as e:
            raise BackupError(f"{MANIFEST} is not a gpuhub backup manifest: {e}") from None


class HashingReader:
    """A file object that counts and hashes what is read through it (tarfile.addfile reads members so)."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


def add_member(archive: tarfile.TarFile, manifest: Manifest, name: str, source: IO[bytes], size: int, mtime: float) -> None:
    """Write ``size`` bytes of ``source`` as member ``name``, recording its size and checksum."""
    if not MEMBER_NAME.match(name):
        raise BackupError(f"{name!r} is not a name a gpuhub backup holds")
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o600
    reader = HashingReader(source)
    try:
        archive.addfile(info, reader)
    except OSError as e:  # tarfile: "unexpected end of data"
        raise BackupError(f"{name} changed while it was copied ({reader.size} of {size} bytes read: {e})") from None
    manifest.members[name] = {"size": size, "sha256": reader.sha256.hexdigest()}


def add_manifest(archive: tarfile.TarFile, manifest: Manifest) -> None:
    data = manifest.to_json()
    info = tarfile.TarInfo(MANIFEST)
    info.size, info.mode = len(data), 0o600
    info.mtime = int(datetime.fromisoformat(manifest.created).timestamp())
    archive.addfile(info, io.BytesIO(data))


def verify(path: str) -> Manifest:
    """Read the whole archive once: every member's checksum against the manifest. Raises
    ``BackupError`` naming the first member that is missing, extra, cut short or changed."""
    seen: dict[str, dict] = {}
    manifest_data = None
    try:
        with tarfile.open(path, mode="r:") as archive:
            for info in archive:
                if info.name == MANIFEST:
                    manifest_data = archive.extractfile(info).read()
                    continue
                if not info.isfile() or not MEMBER_NAME.match(info.name):
                    raise BackupError(f"{path}: holds {info.name!r}, which no gpuhub backup holds: not restoring from it")
                digest, size, stream = hashlib.sha256(), 0, archive.extractfile(info)
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                seen[info.name] = {"size": size, "sha256": digest.hexdigest()}
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BackupError(f"{path} is not a readable tar archive (cut short or damaged?): {e}") from None
    if manifest_data is None:
        raise BackupError(f"{path} has no {MANIFEST}: not a gpuhub backup, or cut short before its end")
    manifest = Manifest.from_json(manifest_data)
    for name, want in manifest.members.items():
        got = seen.get(name)
        if got is None:
            raise BackupError(f"{path}: {name} is missing (the manifest lists it)")
        if got != want:
            raise BackupError(f"{path}: {name} does not match its checksum (size {got['size']}, expected {want['size']}): the archive is damaged")
    extra = sorted(set(seen) - set(manifest.members))
    if extra:
        raise BackupError(f"{path}: {extra[0]} is not in the manifest")
    if DATABASE not in manifest.members:
        raise BackupError(f"{path}: has no {DATABASE}")
    return manifest
