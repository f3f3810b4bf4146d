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


def key_row(k: SshKey) -> dict:
    return {
        "id": k.id, "algorithm": k.key.algorithm, "fingerprint": k.key.fingerprint, "comment": k.key.comment,
        "added": iso(k.added), "last_used": iso(k.last_used),
    }


class SshKeysHandler(GpuhubAPIHandler):
    async def get(self, name: str):
        user = self.own_or_viewer(name)
        ssh = self.site.ssh
        self.write_json({
            "keys": [key_row(k) for k in await self.gpuhub.ssh_keys.of(user.name)],
            "ssh": {"enabled": bool(ssh.port), "port": (ssh.public_port or ssh.port) or None, "user": user.name},
        })

    async def post(self, name: str):
        user = self.own_or_admin(name, "SSH keys")
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


class SshKeyHandler(GpuhubAPIHandler):
    async def delete(self, name: str, key_id: str):
        user = self.own_or_admin(name, "SSH keys")
        if await self.gpuhub.ssh_keys.remove(user.name, int(key_id), self.current_user.name) is None:
            raise web.HTTPError(404, f"{user.name} has no SSH key {key_id}")
        self.set_status(204)
        self.finish()
