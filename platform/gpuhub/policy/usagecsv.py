"""The usage reports as CSV: one row per usage record, or totals per user or group (GPU-hours held,
and busy where utilisation readings measured them: ``policy.efficiency``). Pure."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from ..contract import iso
from .accounting import UsageRecord
from .efficiency import Efficiency, record_busy

RECORD_COLUMNS = (
    "record", "allocation", "user", "groups", "server", "profile", "device", "share", "start", "end", "gpu_seconds", "gpu_hours", "end_reason",
    "busy_gpu_hours", "readings",
)
TOTAL_COLUMNS = ("gpu_seconds", "gpu_hours", "measured_gpu_hours", "busy_gpu_hours", "busy_share")


def _csv_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection): names are user-chosen text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def records_csv(records: list[UsageRecord], since: datetime, until: datetime) -> str:
    """One row per record, its GPU-seconds clipped to [since, until); an open record has no end; its
    busy GPU-hours and their readings ("nvml", "simulated") empty where it was never measured."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RECORD_COLUMNS)
    for r in records:
        seconds, measured, busy = record_busy(r, since, until)
        writer.writerow(
            [
                r.id,
                r.allocation_id,
                _csv_cell(r.username),
                _csv_cell(" ".join(r.groups)),
                _csv_cell(r.server_name),
                r.profile,
                r.device,
                f"{r.share:g}",
                iso(r.start),
                iso(r.end) or "",
                f"{seconds:.0f}",
                f"{seconds / 3600:.4f}",
                _csv_cell(r.end_reason),
                f"{busy / 3600:.4f}" if r.observed_seconds > 0 else "",
                ("simulated" if r.activity_simulated else "nvml") if r.observed_seconds > 0 else "",
            ]
        )
    return out.getvalue()


def totals_csv(sums: dict[str, Efficiency], by: str) -> str:
    """Per user or group: GPU-hours held, measured and busy, and the busy share of the measured."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((by, *TOTAL_COLUMNS))
    for name, e in sums.items():
        share = e.busy_share
        row = (f"{e.held:.0f}", f"{e.held / 3600:.4f}", f"{e.measured / 3600:.4f}", f"{e.busy / 3600:.4f}", "" if share is None else f"{share:.4f}")
        writer.writerow((_csv_cell(name), *row))
    return out.getvalue()
