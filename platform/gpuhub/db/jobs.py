"""Batch jobs (``JobStore``): queued, started, ended; a person's and everyone's; the output's end kept."""

from __future__ import annotations

from sqlalchemy import func, select

from ..policy.jobs import LIVE, QUEUED, RUNNING
from .database import Database
from .models import JobRow, UsageRow
from .records import Job

LIST_LIMIT = 200


def _record(row: JobRow) -> Job:
    return Job(
        row.id, row.username, row.name, row.profile, tuple(row.command), row.workdir, row.wall_time, tuple(row.groups),
        row.state, row.reason, row.submitted, row.submitted_by, row.started, row.ended, row.exit_code, row.allocation_id,
        tuple(u for u in row.gpus.split(",") if u), row.gpu_seconds, row.container,
    )


class JobStore:
    def __init__(self, db: Database):
        self.db = db

    def submit(self, username: str, name: str, profile: str, command, workdir: str, wall_time: int, groups, by: str, most: int) -> Job | None:
        """Queue a job (one transaction); None when ``username`` has ``most`` jobs waiting or running."""
        with self.db.serialised() as session:
            live = session.scalar(
                select(func.count()).select_from(JobRow).where(JobRow.username == username, JobRow.state.in_(LIVE))
            )
            if live >= most:
                return None
            row = JobRow(
                username=username, name=name, profile=profile, command=list(command), workdir=workdir, wall_time=wall_time,
                groups=list(groups), state=QUEUED, submitted=self.db.clock(), submitted_by=by,
            )
            session.add(row)
            session.flush()
            return _record(row)

    def get(self, job_id: int) -> Job | None:
        with self.db.read() as session:
            row = session.get(JobRow, job_id)
            return _record(row) if row else None

    def of(self, username: str | None = None, limit: int = LIST_LIMIT) -> list[Job]:
        """The newest jobs first: ``username``'s, or everyone's."""
        with self.db.read() as session:
            query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
            if username is not None:
                query = query.where(JobRow.username == username)
            return [_record(r) for r in session.scalars(query)]

    def live(self) -> list[Job]:
        """The jobs waiting or running, oldest first (a hub restart takes them up again in this order)."""
        with self.db.read() as session:
            return [_record(r) for r in session.scalars(select(JobRow).where(JobRow.state.in_(LIVE)).order_by(JobRow.id))]

    def started(self, job_id: int, allocation_id: int | None, gpus, container: str) -> Job | None:
        """The job got its devices and its container: running. None if it ended meanwhile (cancelled)."""
        with self.db.serialised() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.state != QUEUED:
                return None
            row.state, row.started, row.allocation_id = RUNNING, self.db.clock(), allocation_id
            row.gpus, row.container = ",".join(gpus), container
            return _record(row)

    def ended(self, job_id: int, state: str, reason: str, exit_code: int | None, output_tail: str) -> Job | None:
        """Record the job's end once (None if it had ended already), with its GPU-seconds from its
        allocation's usage records (closed by the release before this)."""
        with self.db.serialised() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.state not in LIVE:
                return None
            now = self.db.clock()
            row.state, row.reason, row.exit_code, row.ended = state, reason[:1024], exit_code, now
            row.output_tail = output_tail
            if row.allocation_id is not None:
                usage = session.scalars(select(UsageRow).where(UsageRow.allocation_id == row.allocation_id)).all()
                row.gpu_seconds = sum(
                    u.gpu_seconds if u.gpu_seconds is not None else u.share * ((u.end or now) - u.start).total_seconds()
                    for u in usage
                )
            return _record(row)

    def output_tail(self, job_id: int) -> str:
        with self.db.read() as session:
            return session.scalar(select(JobRow.output_tail).where(JobRow.id == job_id)) or ""
