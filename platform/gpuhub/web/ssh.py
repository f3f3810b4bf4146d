"""A person's SSH keys (``/hub/api/gpuhub/v1/users/NAME/ssh-keys``): read by the person (their
session, or a token of theirs with ``read:servers``) and GPU viewers; added and removed by the person
(with ``servers`` for themselves: a key reaches their servers) and GPU admins. The keys reach only
that person's own server (``hub.ssh``)."""

from __future__ import annotations

from tornado import web

from ..contract import iso
from ..db.records import SshKey
from ..hub.sshkeys import SshKeyError
from . import payloads
from .base import GpuhubAPIHandler
from .payloads import BadRequest
from .scopes import ADMIN


def key_row(k: SshKey) -> dict:
    return {
        "id": k.id, "algorithm": k.key.algorithm, "fingerprint": k.key.fingerprint, "comment": k.key.comment,
        "added": iso(k.added), "last_used": iso(k.last_used),
    }


class SshKeysBase(GpuhubAPIHandler):
    def own_or_admin(self, name: str):
        """The hub user ``name`` when the request is theirs with ``servers`` for them, or a GPU admin's; else 403."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if ADMIN in self.expanded_scopes:
            return self.own_or_viewer(name)
        if getattr(self.current_user, "kind", "") == "user" and self.current_user.name == name:
            return self.user_allowed(name, "servers")
        raise web.HTTPError(403, f"Only {name} themselves or a GPU admin ({ADMIN}) may change {name}'s SSH keys")


class SshKeysHandler(SshKeysBase):
    async def get(self, name: str):
        user = self.own_or_viewer(name)
        ssh = self.site.ssh
        self.write_json({
            "keys": [key_row(k) for k in await self.gpuhub.ssh_keys.of(user.name)],
            "ssh": {"enabled": bool(ssh.port), "port": (ssh.public_port or ssh.port) or None, "user": user.name},
        })

    async def post(self, name: str):
        user = self.own_or_admin(name)
        data = payloads.parse_json_object(self.request.body)
        payloads.only_fields(data, ("key",))
        try:
            added = await self.gpuhub.ssh_keys.add(user.name, data.get("key"), self.current_user.name)
        except SshKeyError as e:
            if e.status == 400:
                raise BadRequest("key", str(e)) from None
            raise web.HTTPError(e.status, str(e)) from None
        self.set_status(201)
        self.write_json(key_row(added))


class SshKeyHandler(SshKeysBase):
    async def delete(self, name: str, key_id: str):
        user = self.own_or_admin(name)
        if await self.gpuhub.ssh_keys.remove(user.name, int(key_id), self.current_user.name) is None:
            raise web.HTTPError(404, f"{user.name} has no SSH key {key_id}")
        self.set_status(204)
        self.finish()
