"""The SSH key service: the public keys people register for SSH into their own servers
(``db.sshkeys``; which keys are accepted: ``policy.sshkeys``), and what the SSH gateway asks of it
(``authorized``, ``used``). Every change is logged, with who made it."""

from __future__ import annotations

from ..config.schema import Settings
from ..db.records import SshKey
from ..db.sshkeys import SshKeyStore
from ..policy.sshkeys import parse_public_key
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log


class SshKeyError(ValueError):
    """A key not registered: ``status`` 400 (not a key we accept) or 409 (already registered, or too many)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SshKeyService:
    def __init__(self, settings: Settings, database: DatabaseOpener):
        self.settings = settings
        self._run = StoreCalls(database, SshKeyStore, Worker("gpuhub-sshkeys"))

    async def of(self, username: str) -> list[SshKey]:
        return await self._run("of", username)

    async def add(self, username: str, text, by: str) -> SshKey:
        ssh = self.settings.ssh
        try:
            key = parse_public_key(text, ssh.min_rsa_bits)
        except ValueError as e:
            raise SshKeyError(400, str(e)) from None
        added = await self._run("add", username, key, ssh.max_keys_per_user)
        if added == "registered":
            raise SshKeyError(409, f"this key ({key.fingerprint}) is registered for {username} already")
        if added == "taken":
            raise SshKeyError(
                409,
                f"this key ({key.fingerprint}) is registered by another person: a key belongs to one person."
                " Make a key of your own (ssh-keygen -t ed25519)",
            )
        if added == "full":
            raise SshKeyError(409, f"{username} has {ssh.max_keys_per_user} keys already ([ssh] max_keys_per_user): remove one first")
        log.info("gpuhub ssh-keys %s: key %d %s %s added by %s", username, added.id, key.algorithm, key.fingerprint, by)
        return added

    async def remove(self, username: str, key_id: int, by: str) -> SshKey | None:
        removed = await self._run("remove", username, key_id)
        if removed is not None:
            log.info("gpuhub ssh-keys %s: key %d %s removed by %s", username, key_id, removed.key.fingerprint, by)
        return removed

    async def used(self, key_id: int) -> None:
        await self._run("used", key_id)
