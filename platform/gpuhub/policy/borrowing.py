"""Borrowed GPUs taken back: which borrowers are stopped, for which waiters.

A start beyond its user's GPU count quota (``max_gpus``, ``max_shared_slices``) that ``[borrowing]``
allows runs on a *borrowed* GPU, placed only while nobody else waits for those devices
(``policy.decide``). When someone then waits (every waiter is within their quota: a borrower never
waits), ``to_take_back`` picks the borrowers to stop, waiter by waiter in the lines' order:

- a waiter that fits in what is free (after what earlier waiters in this round take) needs nobody;
- else the borrowers are taken in this order: those already being taken back (warned: the warning
  stands rather than warning someone else), then the newest first; as few as let the waiter in are
  chosen (the newest first, then any not needed for the place found are left);
- a waiter that even every borrower's devices would not let in takes nobody's;
- never chosen: a server started within quota (not borrowed), and a borrower's server for a
  classroom session while that session's window is open.

A chosen borrower is warned, given ``[borrowing] grace_period``, then stopped (files kept); a borrower
no longer chosen (its waiter left, or got a GPU otherwise) keeps its server. Pure: the hub's
``BorrowingService`` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..inventory.model import Inventory
from .allocator import Holding, NoFitNow, Placement, change_holdings, place
from .decide import Start, usable_for
from .quotas import Ask, EffectiveQuota, Held, count_refusal
from .durations import duration_text
from .sessions import Session, open_window


@dataclass(frozen=True)
class Borrower:
    """A live borrowed allocation."""

    allocation: int
    user: str
    server: str
    mode: str
    uuids: tuple[str, ...]
    memory_bytes: int
    created: datetime
    session: str = ""

    def devices(self) -> list[tuple[str, str, int]]:
        return [(uuid, self.mode, self.memory_bytes) for uuid in self.uuids]


@dataclass(frozen=True)
class Wanting:
    """A start waiting in line for a GPU (``number``: its ticket)."""

    number: int
    start: Start


def beyond_quota(quota: EffectiveQuota, held: list[Held], profile: str, request) -> bool:
    """Whether a start of ``profile`` (its GPU ``request``) beside ``held`` would go beyond the GPU count
    quota (what the form marks "borrowed" where the profile may borrow)."""
    return count_refusal(quota, held, Ask(profile, request.mode, request.count, 0, 0.0)) is not None


def protected(borrower: Borrower, sessions: dict[str, Session], now: datetime) -> bool:
    """A borrower's server for a classroom session, while its window is open, is never taken back."""
    session = sessions.get(borrower.session) if borrower.session else None
    return session is not None and open_window(session, now) is not None


def to_take_back(
    inventory: Inventory,
    holdings: list[Holding],
    borrowers: list[Borrower],
    waiting: list[Wanting],
    sessions: list[Session],
    now: datetime,
    max_shares: int,
    taking: frozenset[int] = frozenset(),
) -> dict[int, int]:
    """Borrowed allocation id → the ticket number of the waiter it is taken back for (module
    docstring). ``waiting`` in the lines' order; ``taking``: the allocations being taken back already."""
    by_name = {s.name: s for s in sessions}
    held = {(h.uuid, h.mode): h for h in holdings}
    candidates = sorted(
        (b for b in borrowers if not protected(b, by_name, now)),
        key=lambda b: (b.allocation not in taking, -b.created.timestamp(), -b.allocation),
    )
    chosen: dict[int, int] = {}
    for wanting in waiting:
        request = wanting.start.request
        usable = usable_for(inventory, wanting.start, sessions, now)
        decision = place(usable, list(held.values()), request, max_shares)
        if isinstance(decision, Placement):
            change_holdings(held, [(u, request.mode, decision.memory_bytes) for u in decision.uuids], 1)
            continue
        if not isinstance(decision, NoFitNow):
            continue
        picked = _fewest(usable, held, [c for c in candidates if c.allocation not in chosen], wanting.start, max_shares)
        if picked is None:
            continue
        needed, placement = picked
        for borrower in needed:
            chosen[borrower.allocation] = wanting.number
            change_holdings(held, borrower.devices(), -1)
        change_holdings(held, [(u, request.mode, placement.memory_bytes) for u in placement.uuids], 1)
    return chosen


def _fewest(usable: Inventory, held: dict, candidates: list[Borrower], start: Start, max_shares: int):
    """(the borrowers to stop, where the waiter then goes): the first of ``candidates`` whose devices
    together let ``start`` in, less those the place found does not use; None if all of them would not."""
    trial, picked = dict(held), []
    for borrower in candidates:
        change_holdings(trial, borrower.devices(), -1)
        picked.append(borrower)
        placement = place(usable, list(trial.values()), start.request, max_shares)
        if isinstance(placement, Placement):
            break
    else:
        return None
    needed = [b for b in picked if set(b.uuids) & set(placement.uuids)]
    if len(needed) < len(picked):
        trial = dict(held)
        for borrower in needed:
            change_holdings(trial, borrower.devices(), -1)
        fewer = place(usable, list(trial.values()), start.request, max_shares)
        if isinstance(fewer, Placement):
            return needed, fewer
    return picked, placement


def server_text(server: str) -> str:
    return f"Your server {server!r}" if server else "Your server"


def warning(borrower: Borrower, stop_at: datetime, now: datetime) -> str:
    """What the borrower's JupyterLab shows while the grace period runs."""
    return (
        f"{server_text(borrower.server)} runs on a borrowed GPU (beyond your GPU quota), and someone within"
        f" their quota is waiting for it: it will be stopped at {stop_at:%H:%M} UTC"
        f" (in {duration_text(max(0.0, (stop_at - now).total_seconds()))}). Save your work; your files are kept."
    )


def stopped(borrower: Borrower, at: datetime) -> str:
    """What the borrower sees once the server was stopped (the home page, the next JupyterLab)."""
    return (
        f"{server_text(borrower.server)} was stopped at {at:%H:%M} UTC: it ran on a borrowed GPU (beyond"
        " your GPU quota) and someone within their quota needed it. Your files are kept; start again when"
        " GPUs are free, or within your quota."
    )
