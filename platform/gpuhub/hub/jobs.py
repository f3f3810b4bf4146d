"""The job service: batch jobs (``[jobs]``) from submission to their recorded end.

A job is not a JupyterHub server: the hub runs it itself. Submitted (``submit``: the request checked
by ``policy.jobs``, the person's quota now, the image here), it waits in the same GPU lines as servers
(``AllocationService.acquire`` with the job's own place: when it was submitted), under the same
quotas, fair share and accounting; its allocation is held under ``job/ID``, never a server's name, so
GPU-idle reclaim and culling never see it. Placed, it runs in a container built as a server's is
(``policy.containers.build``: image, home, datasets, uid, caps, exactly its devices) with the command
``policy.jobs.container_command`` makes. Watched every ``POLL_SECONDS`` to its end: its exit, its
wall time (stopped, "timed out"), its allocation freed by an admin or the weekly GPU-hours ("stopped"),
a cancel. At its end the allocation is released, the output's end kept in the database (the whole
output stays in the home), the GPU-seconds read from its usage records, the container removed.

A hub restart (``run``): jobs that were waiting join the lines again at their places; running ones
are watched again (their containers ran on; the restart reconcile kept their allocations, found by
the containers' labels); one whose container is gone is recorded "stopped".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from .. import contract as c
from ..config.schema import Settings
from ..db.jobs import JobStore
from ..db.records import Job
from ..engine.base import Engine
from ..policy import containers
from ..policy.durations import duration_text
from ..policy.errors import SpawnRefused
from ..policy.jobs import (
    CANCELLED, FAILED, QUEUED, RUNNING, STOPPED, TIMED_OUT, JobRequest, container_command, ended_state, environment, job_dir,
    job_start,
)
from ..policy.profiles import missing_image_text
from ..policy.slugs import render_name
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log
from .progress import StartProgress

POLL_SECONDS = 2.0
STOP_GRACE_SECONDS = 10
OUTPUT_KEPT_BYTES = 256 * 1024


class JobService:
    def __init__(self, settings: Settings, database: DatabaseOpener, engine: Engine, allocation, clock: Callable[[], datetime]):
        self.settings = settings
        self.engine = engine
        self.allocation = allocation
        self._clock = clock
        self._run = StoreCalls(database, JobStore, Worker("gpuhub-jobs"))
        self._tasks: dict[int, asyncio.Task] = {}
        self._ending: dict[int, tuple[str, str]] = {}  # job id → (state, why) the hub ends it with

    # --- what handlers and the CLI ask ------------------------------------------------------------------
    async def submit(self, username: str, groups, request: JobRequest, by: str) -> Job:
        """Queue ``request`` (checked by ``web.payloads.job_request``) for ``username``; ``SpawnRefused`` (4xx) if not."""
        if not self.engine.runs_jobs:
            raise SpawnRefused(409, f"Batch jobs are not available on the {self.engine.name!r} engine", why="jobs")
        profile = request.profile
        start = job_start(username, groups, profile, "job/new")
        await self.allocation.ready()
        await self.allocation.check_start(start)  # 403 beyond the quota even with nothing else held: never after a night in line
        if not await self.engine.has_image(profile.image):
            raise SpawnRefused(409, missing_image_text(profile.image, profile.name), why="image-missing")
        job = await self._run(
            "submit", username, request.name, profile.name, request.command, request.workdir, request.wall_time, groups, by,
            self.settings.jobs.max_queued_per_user,
        )
        if job is None:
            raise SpawnRefused(
                409, f"{username} has {self.settings.jobs.max_queued_per_user} jobs waiting or running already"
                " ([jobs] max_queued_per_user): cancel one, or wait for one to end", why="jobs",
            )
        log.info(
            "gpuhub %s:%s: job %r queued by %s (profile %s, wall time %s)",
            username, job.server_name, job.name, by, profile.name, duration_text(job.wall_time),
        )
        self._launch(job)
        return job

    async def of(self, username: str | None = None) -> list[Job]:
        return await self._run("of", username)

    async def get(self, job_id: int) -> Job | None:
        return await self._run("get", job_id)

    async def output(self, job: Job) -> str:
        """The end of the job's output: from its container while it has one, else as kept at its end."""
        if job.state == RUNNING and job.container:
            return await self.engine.container_output(job.container, OUTPUT_KEPT_BYTES)
        return await self._run("output_tail", job.id)

    async def cancel(self, job: Job, by: str) -> None:
        """Take a waiting job out of its line, or stop a running one (SIGTERM, then SIGKILL): "cancelled"."""
        self._ending.setdefault(job.id, (CANCELLED, f"cancelled by {by}"))
        task = self._tasks.get(job.id)
        if job.state == QUEUED and task is not None:
            task.cancel()
        elif job.state == RUNNING and job.container:
            await self.engine.end_job(job.container, STOP_GRACE_SECONDS, remove=False)
        elif task is None:  # nothing watches it (a hub without jobs engine): recorded at once
            await self._end(job, None)

    # --- the hub process: take up the live jobs, then each job's life -----------------------------------
    async def run(self) -> None:
        """Take up the jobs a previous hub process left waiting or running, in their order."""
        if not self.engine.runs_jobs:
            return
        try:
            await self.allocation.ready()  # the reconcile keeps the allocations of job containers that run
            for job in await self._run("live"):
                if job.id not in self._tasks:
                    log.info("gpuhub %s:%s: job taken up again after the hub restarted (%s)", job.username, job.server_name, job.state)
                    self._launch(job)
        except Exception:
            log.exception("gpuhub jobs: the jobs left by the previous hub process were not taken up")

    def _launch(self, job: Job) -> None:
        self._tasks[job.id] = asyncio.ensure_future(self._life(job))

    async def _life(self, job: Job) -> None:
        name = f"{job.username}:{job.server_name}"
        try:
            if job.state == QUEUED:
                job = await self._place_and_start(job)
            if job is not None:
                await self._watch(job)
        except asyncio.CancelledError:
            if job.id not in self._ending:
                raise  # the hub is stopping: the next process takes the job up
            await asyncio.shield(self._end(job, None))
        except SpawnRefused as e:
            self._ending.setdefault(job.id, (STOPPED if e.why == "removed" else FAILED, e.message))
            await self._end(job, None)
        except Exception as e:
            log.exception("gpuhub %s: job failed in the hub", name)
            self._ending.setdefault(job.id, (FAILED, f"the hub could not run it: {e}"))
            await self._end(job, None)
        finally:
            self._tasks.pop(job.id, None)

    async def _place_and_start(self, job: Job) -> Job | None:
        """Wait in line for the job's devices, then create and start its container: the job running."""
        name = f"{job.username}:{job.server_name}"
        profile = self.settings.profile(job.profile)
        if profile is None:
            raise SpawnRefused(409, f"its profile {job.profile!r} is no longer on this hub", why="profile")
        start = job_start(job.username, job.groups, profile, job.server_name)
        allocation = None
        if start.request is not None:
            allocation = await self.allocation.acquire(
                start, name, StartProgress(), job=(job.submitted, self.settings.jobs.max_wait)
            )
        try:
            assignment = allocation.assignment() if allocation else None
            container = f"{render_name(self.settings.spawner.container_name, job.username)}__job-{job.id}"
            spec = containers.build(self.settings, profile, job.username, devices=self.engine.wiring(assignment), server_name=job.server_name)
            spec = containers.with_labels(spec, {c.JOB_LABEL: str(job.id)})
            gpus = len(assignment.uuids) if assignment and assignment.mode == "exclusive" else (1 if assignment else 0)
            out_dir = f"{self.settings.spawner.home_path}/{job_dir(job.id)}"
            await self.engine.run_job(
                container, spec, container_command(job.command, gpus, out_dir),
                environment(job.id, job.workdir, gpus, profile.cpu_limit), self.settings.spawner.network,
            )
        except BaseException:
            if allocation is not None:
                await self.allocation.release(allocation.id, "its job's container did not start")
            raise
        started = await self._run("started", job.id, allocation.id if allocation else None, assignment.uuids if assignment else (), container)
        if started is None:  # cancelled while its container was made
            await self.engine.end_job(container, 0, remove=True)
            if allocation is not None:
                await self.allocation.release(allocation.id, "job cancelled")
            return None
        log.info("gpuhub %s: job started in %s on GPUs %s", name, container, ",".join(started.gpus) or "none")
        return started

    async def _watch(self, job: Job) -> None:
        """Until the container ends: stop it at its wall time, or when its allocation was freed."""
        deadline = (job.started or self._clock()) + timedelta(seconds=job.wall_time)
        while True:
            state = await self.engine.container_state(job.container)
            if state is None or not state.running:
                break
            if job.id not in self._ending:
                if self._clock() >= deadline:
                    self._ending[job.id] = (TIMED_OUT, f"its wall time of {duration_text(job.wall_time)} was reached")
                elif job.allocation_id and not await self.allocation.still_held(job.allocation_id):
                    self._ending[job.id] = (STOPPED, "its GPU allocation was freed (by an admin, or its weekly GPU-hours ran out)")
                if job.id in self._ending:
                    log.info("gpuhub %s:%s: job stopped: %s", job.username, job.server_name, self._ending[job.id][1])
                    await self.engine.end_job(job.container, STOP_GRACE_SECONDS, remove=False)
                    continue
            await asyncio.sleep(POLL_SECONDS)
        if state is None:
            self._ending.setdefault(job.id, (STOPPED, "its container was gone (removed while the hub was down?)"))
        elif state.oom_killed:
            self._ending.setdefault(job.id, (FAILED, f"out of memory: the profile's {job.profile} memory limit was reached"))
        await self._end(job, state.exit_code if state else None)

    async def _end(self, job: Job, exit_code: int | None) -> None:
        """Release its devices, keep the output's end, record how it ended, remove the container."""
        state, reason = self._ending.pop(job.id, ("", ""))
        state = ended_state(exit_code, state)
        if state == FAILED and not reason and exit_code is not None:
            reason = f"exit status {exit_code}"
        tail = await self.engine.container_output(job.container, OUTPUT_KEPT_BYTES) if job.container else ""
        if job.allocation_id:
            await self.allocation.release(job.allocation_id, f"job {state}")
        ended = await self._run("ended", job.id, state, reason, exit_code, tail)
        if job.container:
            await self.engine.end_job(job.container, 0, remove=True)
        if ended is not None:
            log.info(
                "gpuhub %s:%s: job %s%s (exit status %s, %.2f GPU-hours)", job.username, job.server_name, state,
                f": {reason}" if reason else "", exit_code, (ended.gpu_seconds or 0) / 3600,
            )
