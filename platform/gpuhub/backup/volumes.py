"""A Docker volume's files out of the engine and into it, through a helper container that mounts the
volume and is created but never started (the engine reads and writes a stopped container's mounts:
``docker cp``'s API). Files keep their owners and modes both ways."""

from __future__ import annotations

import contextlib
import tarfile
from typing import IO

MOUNT = "/gpuhub-volume"
HELPER_LABEL = "org.gpuhub.backup-helper"


class VolumeFiles:
    """``client``: docker-py's low-level client; ``image``: any image on the engine (the helper never runs)."""

    def __init__(self, client, image: str):
        self.client = client
        self.image = image

    def exists(self, volume: str) -> bool:
        return any(v["Name"] == volume for v in self.client.volumes(filters={"name": volume}).get("Volumes") or [])

    def labels(self, volume: str) -> dict:
        return self.client.inspect_volume(volume).get("Labels") or {}

    def users(self, volume: str, running_only: bool = False) -> list[dict]:
        """The containers (other than helpers) that mount ``volume``."""
        found = self.client.containers(all=not running_only, filters={"volume": volume})
        return [c for c in found if HELPER_LABEL not in (c.get("Labels") or {})]

    @contextlib.contextmanager
    def _helper(self, volume: str, read_only: bool):
        host_config = self.client.create_host_config(binds={volume: {"bind": MOUNT, "mode": "ro" if read_only else "rw"}},
                                                     network_mode="none")
        helper = self.client.create_container(self.image, command=["true"], host_config=host_config,
                                              labels={HELPER_LABEL: volume}, network_disabled=True)
        try:
            yield helper["Id"]
        finally:
            self.client.remove_container(helper["Id"], force=True)

    def export(self, volume: str, out: IO[bytes]) -> None:
        """The volume's files as a tar stream (paths under ``gpuhub-volume/``) written to ``out``."""
        with self._helper(volume, read_only=True) as helper:
            stream, _ = self.client.get_archive(helper, MOUNT)
            for chunk in stream:
                out.write(chunk)

    def is_empty(self, volume: str) -> bool:
        with self._helper(volume, read_only=True) as helper:
            stream, _ = self.client.get_archive(helper, MOUNT)
            spooled = _Chunks(stream)
            with tarfile.open(fileobj=spooled, mode="r|") as archive:
                names = [info.name for _, info in zip(range(2), archive)]
            return len(names) <= 1  # the mount folder itself

    def create(self, volume: str, labels: dict) -> None:
        self.client.create_volume(volume, labels=labels or None)

    def remove(self, volume: str) -> None:
        self.client.remove_volume(volume)

    def load(self, volume: str, source: IO[bytes]) -> None:
        """Unpack an ``export``'s tar stream into the volume (owners and modes as recorded)."""
        with self._helper(volume, read_only=False) as helper:
            if not self.client.put_archive(helper, "/", source):
                raise RuntimeError(f"the engine did not unpack the files of {volume}")


class _Chunks:
    """A read() over an iterator of byte chunks (get_archive's stream) for tarfile's stream mode."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.buffer = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buffer) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if n < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data
