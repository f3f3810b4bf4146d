"""The nodes of an engine of several hosts (Swarm): their node reporters' reports come in here, and
the admin pages read the nodes' states (``/hub/api/gpuhub/v1/nodes``). On one Docker host the list
is empty and reports are refused (409: there are no nodes to report)."""

from __future__ import annotations

from tornado import web

from ..contract import iso
from ..inventory.activity import devices_json
from ..inventory.report import ReportError, parse_report
from .base import GpuhubAPIHandler
from .payloads import BadRequest, parse_json_object
from .scopes import ADMIN, READ, REPORT, require

MAX_REPORT = 256 * 1024  # 64 GPUs with 7 MIG slices each fit in well under this


class NodesHandler(GpuhubAPIHandler):
    async def get(self):
        require(self, READ)
        engine = self.gpuhub.engine
        statuses = await engine.nodes()
        held = await self.gpuhub.allocation.held_per_node()
        self.write_json(
            {
                "engine": engine.name,
                "nodes": [
                    {
                        "id": s.id,
                        "hostname": s.hostname,
                        "role": s.role,
                        "state": s.state,
                        "availability": s.availability,
                        "takes_servers": s.schedulable,
                        "why_not": s.why_not,
                        "reported": iso(s.reported),
                        "gpus": s.gpus,
                        "mig_slices": s.mig_slices,
                        "gpus_held": held.get(s.id, 0),
                        "source": s.source,
                        "simulated": s.simulated,
                    }
                    for s in statuses
                ],
            }
        )


class ActivityHandler(GpuhubAPIHandler):
    """How busy every node's devices are (the nodes' reporters' readings merged): what the agent's
    GPU-idle reclaim reads on a Swarm. One Docker host has no nodes to merge: 409."""

    async def get(self):
        require(self, ADMIN)
        engine = self.gpuhub.engine
        if not hasattr(engine, "activity"):
            raise web.HTTPError(409, f"this hub's engine is {engine.name!r}: the agent reads its GPUs itself ([reclaim] activity)")
        reading = engine.activity()
        self.write_json({"source": reading.source, "simulated": reading.simulated, "devices": devices_json(reading.devices)})


class NodeReportHandler(GpuhubAPIHandler):
    async def post(self, node_id: str):
        require(self, REPORT)
        engine = self.gpuhub.engine
        if not hasattr(engine, "node_report"):
            raise web.HTTPError(409, f"this hub's engine is {engine.name!r}: it has no nodes to report ([engine] kind = \"swarm\" has)")
        try:
            report = parse_report(parse_json_object(self.request.body, MAX_REPORT), node_id)
        except ReportError as e:
            raise BadRequest(e.field, str(e)) from None
        engine.node_report(report)
        self.set_status(204)
        self.finish()


class HomesHandler(GpuhubAPIHandler):
    """Where each user's home lives (a Swarm with homes on the nodes; empty otherwise)."""

    async def get(self):
        require(self, READ)
        homes = await self.gpuhub.homes.all()
        self.write_json({"homes": [{"user": h.username, "node": h.hostname, "node_id": h.node_id, "since": iso(h.since)} for h in homes]})


class HomeMoveHandler(GpuhubAPIHandler):
    """``POST /homes/<user>/move {"to": "gpu-2"}``: copy the home to that node and keep the user's
    servers there from now on (their servers must be stopped)."""

    async def post(self, username: str):
        require(self, ADMIN)
        data = parse_json_object(self.request.body)
        to = data.get("to")
        if not isinstance(to, str) or not to:
            raise BadRequest("to", "missing. Accepted: a node's hostname or id (GET /nodes lists them)")
        user = self.find_user(username)
        if user is None:
            raise web.HTTPError(404, f"no user {username!r}")
        running = any(s.active for s in user.spawners.values())
        home = await self.gpuhub.homes.move(username, to, running, self.current_user.name)
        self.write_json({"user": home.username, "node": home.hostname, "node_id": home.node_id, "since": iso(home.since)})
