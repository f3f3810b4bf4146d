"""gpuhub's tables, beside JupyterHub's own in the hub's database. Created and upgraded by alembic
(``migrations/``), with gpuhub's own version table (``VERSION_TABLE``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, Unicode, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

VERSION_TABLE = "gpuhub_alembic_version"


class Base(DeclarativeBase):
    pass


class AllocationRow(Base):
    __tablename__ = "gpuhub_allocations"
    __table_args__ = (
        Index("ix_gpuhub_allocations_live", "released"),  # the live ones (named as migration 0001 made it)
        Index("ix_gpuhub_allocations_user_live", "username", "released"),  # a user's live ones
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Unicode(255))
    server_name: Mapped[str] = mapped_column(Unicode(255), default="")
    profile: Mapped[str] = mapped_column(Unicode(63))
    mode: Mapped[str] = mapped_column(Unicode(16))
    created: Mapped[datetime] = mapped_column(DateTime)
    released: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    release_reason: Mapped[str] = mapped_column(Unicode(255), default="")
    session: Mapped[str] = mapped_column(Unicode(63), default="")  # the classroom session it was made for
    borrowed: Mapped[bool] = mapped_column(Boolean, default=False)  # beyond its user's GPU quota ([borrowing])
    devices: Mapped[list[DeviceRow]] = relationship(back_populates="allocation", cascade="all, delete-orphan")


class DeviceRow(Base):
    __tablename__ = "gpuhub_allocation_devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"), index=True)
    uuid: Mapped[str] = mapped_column(Unicode(96), index=True)
    mode: Mapped[str] = mapped_column(Unicode(16))
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    allocation: Mapped[AllocationRow] = relationship(back_populates="devices")


class AllocationVersionRow(Base):
    """One row, its ``version`` raised by every transaction that changes which allocations are live:
    the allocation store keeps the live holdings between decisions while it is unchanged."""

    __tablename__ = "gpuhub_allocation_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class QuotaRow(Base):
    """One level's quota set by an admin (the API); a column per ``policy.quotas.FIELDS``."""

    __tablename__ = "gpuhub_quotas"
    __table_args__ = (UniqueConstraint("scope", "name", name="uq_gpuhub_quotas_scope_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(Unicode(16))
    name: Mapped[str] = mapped_column(Unicode(255), default="")
    max_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_shared_slices: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gpu_hours_per_week: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_cpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    profiles: Mapped[list | None] = mapped_column(JSON, nullable=True)
    updated: Mapped[datetime] = mapped_column(DateTime)


class UsageRow(Base):
    """One device of one allocation, for accounting (see ``policy.accounting``)."""

    __tablename__ = "gpuhub_usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(Unicode(255), index=True)
    groups: Mapped[list] = mapped_column(JSON)
    server_name: Mapped[str] = mapped_column(Unicode(255), default="")
    profile: Mapped[str] = mapped_column(Unicode(63))
    device: Mapped[str] = mapped_column(Unicode(96))
    share: Mapped[float] = mapped_column(Float)
    start: Mapped[datetime] = mapped_column(DateTime, index=True)
    end: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    gpu_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str] = mapped_column(Unicode(255), default="")
    # utilisation readings (``policy.efficiency``): GPU-seconds measured, of those busy, the latest reading
    observed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    sampled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    activity_simulated: Mapped[bool] = mapped_column(Boolean, default=False)


class UsageTotalRow(Base):
    """GPU-seconds of every closed usage record, per user and per group: kept in the transaction that
    closes a record, so the metrics never read the whole history (``usage.UsageStore.totals``)."""

    __tablename__ = "gpuhub_usage_totals"
    kind: Mapped[str] = mapped_column(Unicode(8), primary_key=True)  # "user" or "group"
    name: Mapped[str] = mapped_column(Unicode(255), primary_key=True)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    observed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class WaiterRow(Base):
    """A GPU start waiting in line, kept so that a hub restart does not drop it: the restarted hub
    starts it again with the same options, at its place (``waiters.WaiterStore``)."""

    __tablename__ = "gpuhub_waiters"
    __table_args__ = (UniqueConstraint("username", "server_name", name="uq_gpuhub_waiters_server"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Unicode(255))
    server_name: Mapped[str] = mapped_column(Unicode(255), default="")
    profile: Mapped[str] = mapped_column(Unicode(63))
    options: Mapped[dict] = mapped_column(JSON)
    joined: Mapped[datetime] = mapped_column(DateTime)
    boot: Mapped[str] = mapped_column(Unicode(32))  # the hub process that serves it


class SessionRow(Base):
    __tablename__ = "gpuhub_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Unicode(63), unique=True)
    spec: Mapped[dict] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(Unicode(255), default="")
    updated: Mapped[datetime] = mapped_column(DateTime)
    prewarm_requested: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    stop_requested: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RosterRow(Base):
    __tablename__ = "gpuhub_roster"
    __table_args__ = (UniqueConstraint("session_id", "username", name="uq_gpuhub_roster_session_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("gpuhub_sessions.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(Unicode(255), index=True)
    name: Mapped[str] = mapped_column(Unicode(200), default="")
    email: Mapped[str] = mapped_column(Unicode(254), default="")
    added: Mapped[datetime] = mapped_column(DateTime)


class HomeRow(Base):
    """Where a user's home lives on an engine of several hosts with homes on the nodes
    (``[engine] homes = "node"``): the node their servers run on (``homes.HomeStore``)."""

    __tablename__ = "gpuhub_homes"
    username: Mapped[str] = mapped_column(Unicode(255), primary_key=True)
    node_id: Mapped[str] = mapped_column(Unicode(64))
    hostname: Mapped[str] = mapped_column(Unicode(255))
    since: Mapped[datetime] = mapped_column(DateTime)


class SshKeyRow(Base):
    """A public key a person registered for SSH into their own server (``[ssh]``). A key belongs to
    one person: the same key cannot be registered by another."""

    __tablename__ = "gpuhub_ssh_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Unicode(255), index=True)
    fingerprint: Mapped[str] = mapped_column(Unicode(64), unique=True)  # "SHA256:..."
    algorithm: Mapped[str] = mapped_column(Unicode(64))
    data: Mapped[str] = mapped_column(Unicode(4096))  # the key blob, base64
    comment: Mapped[str] = mapped_column(Unicode(255), default="")
    added: Mapped[datetime] = mapped_column(DateTime)
    last_used: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class JobRow(Base):
    """A batch job (``[jobs]``): queued in the GPU lines, run in its own container, its end recorded."""

    __tablename__ = "gpuhub_jobs"
    __table_args__ = (Index("ix_gpuhub_jobs_user_state", "username", "state"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Unicode(255))
    name: Mapped[str] = mapped_column(Unicode(255), default="")
    profile: Mapped[str] = mapped_column(Unicode(63))
    command: Mapped[list] = mapped_column(JSON)
    workdir: Mapped[str] = mapped_column(Unicode(1024), default="")
    wall_time: Mapped[int] = mapped_column(Integer)
    groups: Mapped[list] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(Unicode(16), index=True)  # policy.jobs: queued, running, succeeded, ...
    reason: Mapped[str] = mapped_column(Unicode(1024), default="")  # why it ended, when the hub ended it
    submitted: Mapped[datetime] = mapped_column(DateTime)
    submitted_by: Mapped[str] = mapped_column(Unicode(255))
    started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allocation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gpus: Mapped[str] = mapped_column(Unicode(1024), default="")  # the devices' UUIDs, comma-separated
    gpu_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # from its usage records, at its end
    container: Mapped[str] = mapped_column(Unicode(255), default="")
    output_tail: Mapped[str] = mapped_column(Unicode(262144), default="")  # the log's end, kept when the container goes
