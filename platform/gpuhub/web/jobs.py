"""Batch jobs (``/hub/api/gpuhub/v1/users/NAME/jobs``): a person's jobs, read by them (their session, or a
token of theirs with ``read:servers``) and GPU viewers; submitted and cancelled by them (with
``servers`` for themselves: a job runs as their servers do) and GPU admins. ``/jobs``: everyone's, for
GPU viewers (the admin page's Jobs tab)."""

from __future__ import annotations

from tornado import web

from ..contract import iso
from ..db.records import Job
from ..policy.jobs import OUTPUT_FILE, job_dir
from . import payloads
from .base import GpuhubAPIHandler
from .scopes import READ

LOG_CONTENT_TYPE = "text/plain; charset=utf-8"


def job_row(j: Job) -> dict:
    return {
        "id": j.id, "user": j.username, "name": j.name, "profile": j.profile, "command": list(j.command), "workdir": j.workdir,
        "state": j.state, "reason": j.reason, "wall_time": j.wall_time, "submitted": iso(j.submitted),
        "submitted_by": j.submitted_by, "started": iso(j.started), "ended": iso(j.ended), "exit_code": j.exit_code,
        "gpus": list(j.gpus), "gpu_hours": None if j.gpu_seconds is None else round(j.gpu_seconds / 3600, 4),
        "output": f"~/{job_dir(j.id)}/{OUTPUT_FILE}",
    }


class JobsHandler(GpuhubAPIHandler):
    async def get(self, name: str):
        user = self.own_or_viewer(name)
        self.write_json({"jobs": [job_row(j) for j in await self.gpuhub.jobs.of(user.name)]})

    async def post(self, name: str):
        user = self.own_or_admin(name, "jobs")
        groups = [g.name for g in user.groups]
        request = payloads.job_request(self.site, payloads.parse_json_object(self.request.body), groups)
        job = await self.gpuhub.jobs.submit(user.name, groups, request, self.current_user.name)
        self.set_status(201)
        self.write_json(job_row(job))


class JobBase(GpuhubAPIHandler):
    async def job_of(self, name: str, job_id: str, change: bool) -> Job:
        user = self.own_or_admin(name, "jobs") if change else self.own_or_viewer(name)
        job = await self.gpuhub.jobs.get(int(job_id))
        if job is None or job.username != user.name:
            raise web.HTTPError(404, f"{user.name} has no job {job_id}")
        return job


class JobHandler(JobBase):
    async def get(self, name: str, job_id: str):
        self.write_json(job_row(await self.job_of(name, job_id, change=False)))

    async def delete(self, name: str, job_id: str):
        """Cancel: a waiting job leaves its line; a running one is stopped (SIGTERM, SIGKILL after 10 s)."""
        job = await self.job_of(name, job_id, change=True)
        if job.ended is not None:
            raise web.HTTPError(409, f"job {job.id} has ended already ({job.state})")
        await self.gpuhub.jobs.cancel(job, self.current_user.name)
        self.set_status(202)
        self.write_json(job_row(job))


class JobOutputHandler(JobBase):
    async def get(self, name: str, job_id: str):
        """The end of the job's output (the whole of it is in the home: ``~/gpuhub-jobs/ID/output.log``)."""
        job = await self.job_of(name, job_id, change=False)
        self.set_header("Content-Type", LOG_CONTENT_TYPE)
        self.finish(await self.gpuhub.jobs.output(job))


class AllJobsHandler(GpuhubAPIHandler):
    async def get(self):
        if READ not in self.expanded_scopes:
            raise web.HTTPError(403, f"Everyone's jobs are for GPU viewers and admins ({READ})")
        self.write_json({"jobs": [job_row(j) for j in await self.gpuhub.jobs.of(None)]})
