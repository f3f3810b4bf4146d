"""gpuhub's Jupyter server extension, enabled in the user image (``jpserver_extensions``):

- ``GET  /gpuhub/api/v1/gpus``: the GPUs of this server (``gpus.GpuReader``), each process with its
  notebook where it is a kernel, the container's memory and CPU limits (``cgroups``), and the
  hub's notices for the user (``notices``: weekly GPU-hours running out).
- ``POST /gpuhub/api/v1/envcheck``: run the environment check (``envcheck``) in a subprocess with a
  timeout and return its report; ``GET`` returns the last report (404 before the first run).

Both behind the Jupyter server's own authentication and authorisation (``@authorized``): only the
server's owner (and whom JupyterHub lets in) reaches them. NVML reads run off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.ioloop import IOLoop
from traitlets import Integer

from .cgroups import read_limits
from .gpus import GpuReader
from .hubclient import configure_hub_client
from .notices import HubNotices

AUTH_RESOURCE = "gpuhub"


class GpuHubExtension(ExtensionApp):
    name = "gpuhub"

    envcheck_timeout = Integer(
        180,
        help="""Seconds the environment check may run before it is stopped and reported as timed out
        (a hung CUDA call must not hang the user's server). Example: ``180``.""",
    ).tag(config=True)

    def initialize_settings(self):
        IOLoop.current().add_callback(configure_hub_client)  # before the first request to the hub
        self.reader = GpuReader()  # NVML through nvidia-ml-py, initialised on the first read
        self.notices = HubNotices()
        self.last_report = None
        self.check_lock = asyncio.Lock()
        self.settings["gpuhub_extension"] = self

    def initialize_handlers(self):
        self.handlers.extend(
            [(r"/gpuhub/api/v1/gpus", GpusHandler), (r"/gpuhub/api/v1/envcheck", EnvCheckHandler)]
        )

    async def run_envcheck(self, slow: bool) -> dict:
        async with self.check_lock:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gpuhub.singleuser.envcheck", *(["--slow"] if slow else []),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), self.envcheck_timeout)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
                raise web.HTTPError(504, f"the environment check did not finish in {self.envcheck_timeout} s") from None
            if process.returncode != 0:
                raise web.HTTPError(500, f"the environment check failed: {err.decode(errors='replace')[-500:]}")
            self.last_report = json.loads(out)
            return self.last_report


class _Handler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def extension(self) -> GpuHubExtension:
        return self.settings["gpuhub_extension"]


class GpusHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self):
        loop = asyncio.get_running_loop()
        gpus = await loop.run_in_executor(None, self.extension.reader.read)
        limits = await loop.run_in_executor(None, read_limits)
        kernels = {}
        for session in await self.serverapp.session_manager.list_sessions():
            kernels[session["kernel"]["id"]] = session.get("path") or session.get("name")
        for gpu in gpus["gpus"]:
            for p in gpu["processes"]:
                p["notebook"] = kernels.get(p["kernel_id"]) if p["kernel_id"] else None
        gpus["limits"] = {
            "cgroup": limits.version,
            "memory_limit": limits.memory_limit,
            "memory_used": limits.memory_used,
            "cpu_limit": limits.cpu_limit,
        }
        gpus["notices"] = await self.extension.notices.get()
        self.finish(json.dumps(gpus))


class EnvCheckHandler(_Handler):
    @web.authenticated
    @authorized
    async def get(self):
        if self.extension.last_report is None:
            raise web.HTTPError(404, "no report yet: POST to /gpuhub/api/v1/envcheck runs the check")
        self.finish(json.dumps(self.extension.last_report))

    @web.authenticated
    @authorized
    async def post(self):
        slow = self.get_query_argument("slow", "false") in ("1", "true", "yes")
        self.finish(json.dumps(await self.extension.run_envcheck(slow)))
