"""The lines for starts that cannot go ahead yet: one per pool (``allocator.pool_of`` for GPU
requests), each in the site's order (``[fairness]``, ``policy.fairness.order_key``): by default when a
request first joined (``since``: a request re-served after a hub restart keeps its place); with fair
share by priority, one start per person, recent GPU-hours, then arrival (the standings are set by the
allocation service, then ``reorder``).

Everything that may free a device or move a line calls ``changed()``; waiters wake and try again
(and, as a safety net, every few seconds anyway). A newcomer joining a line wakes the waiters too, to
update the places they show, but ``generation`` does not move: nothing was freed. Who tries first
across the GPU lines is ``policy.lineorder``'s rule (``allocation.AllocationService`` applies it);
``admission.StartGate`` uses one line for a turn to start.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..contract import utcnow
from ..policy.estimate import Estimate
from ..policy.fairness import FIFO, Standing, order_key, reason


@dataclass(eq=False)
class Ticket:
    pool: str
    holder: str  # "alice" or "alice:gpu2", for logs and the admin queue view
    number: int = field(default=0)
    profile: str = ""
    since: datetime | None = None
    removed_by: str = ""  # an admin took it out of the line (its spawn ends with a message)
    devices: str = ""  # what it draws on (``policy.lineorder.draws_on``)
    passed_over: int = 0  # later requests placed while it waited (``policy.lineorder``)
    kept: bool = False  # re-served after a hub restart, its place kept
    outcome: object = None  # set by whoever placed it (an allocation, or a refusal)
    tried_at: int | None = None  # the queue's generation when it last tried to take a device
    reason: str = ""  # why it did not fit when it last tried
    payload: object = None  # what its owner needs to place it (a ``Start``)
    person: str = ""  # whose start it is (fair share counts each person's starts)
    standing: Standing | None = None  # fair share: priority and recent GPU-hours (set by its owner)
    nth: int = 0  # fair share: 0 for the person's first waiting start, 1 for their second...
    estimate: Estimate | None = None  # when a device is expected to free for it (``policy.estimate``)
    own_quota: bool = False  # a job that waits only for its own person's GPUs to free (``policy.lineorder``)

    @property
    def competing(self) -> bool:
        """Still waiting, and for devices others hold (not only for its own person's to free)."""
        return self.outcome is None and not self.removed_by and not self.own_quota

    def arrival(self) -> tuple:
        return (self.since, self.number)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class WaitQueue:
    def __init__(self, clock: Callable[[], datetime] = utcnow, policy: str = FIFO):
        self.policy = policy  # ``[fairness] policy``
        self._lines: dict[str, list[Ticket]] = {}
        self._numbers = itertools.count(1)
        self._event = asyncio.Event()
        self._clock = clock
        self.generation = 0  # counts changed(): a waiter retries a placement only when it moved
        self.wakes = 0  # counts every wake-up (changes and joins): ``wait_for_change``'s ``seen``

    def join(self, pool: str, holder: str, profile: str = "", since: datetime | None = None, **fields) -> Ticket:
        """A new ticket at its place in ``pool``: after everyone who joined before ``since`` (default
        now; a request re-served after a restart passes the time it first joined)."""
        ticket = Ticket(pool, holder, next(self._numbers), profile, since or self._clock(), **fields)
        self._lines.setdefault(pool, []).append(ticket)
        self.reorder()
        self._wake()  # the others' "of N" moved; nothing was freed
        return ticket

    def key(self, ticket: Ticket) -> tuple:
        return order_key(self.policy, ticket.since, ticket.number, ticket.standing, ticket.nth)

    def reorder(self) -> None:
        """Each person's starts counted in their own arrival order (``nth``), then every line sorted by
        the site's order: after a join, and after the standings were set."""
        seen: dict[str, int] = {}
        for ticket in sorted(self.tickets(), key=Ticket.arrival):
            ticket.nth = seen.get(ticket.person, 0) if ticket.person else 0
            seen[ticket.person] = ticket.nth + 1
        for line in self._lines.values():
            line.sort(key=self.key)

    def why_here(self, ticket: Ticket) -> str:
        """Why ``ticket`` stands where it does in its line (the admin's queue view)."""
        return reason(self.policy, ticket.standing, ticket.nth)

    def tickets(self) -> list[Ticket]:
        """Everyone waiting, line by line, in order (for admins)."""
        return [t for line in self._lines.values() for t in line]

    def in_order(self) -> list[Ticket]:
        """Everyone waiting, across lines, in the site's order (by default the oldest request first)."""
        return sorted(self.tickets(), key=self.key)

    def remove(self, number: int, by: str) -> Ticket | None:
        """An admin takes ticket ``number`` out of its line; its waiter ends its spawn with a message.
        None if no such ticket waits (it got its GPU, gave up, or was removed already)."""
        ticket = next((t for t in self.tickets() if t.number == number), None)
        if ticket is not None:
            ticket.removed_by = by
            self.leave(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        line = self._lines.get(ticket.pool, [])
        if ticket in line:
            line.remove(ticket)
            if not line:
                del self._lines[ticket.pool]
            self.changed()

    def position(self, ticket: Ticket) -> tuple[int, int]:
        """(1-based place, people in the line); (0, n) once the ticket left the line."""
        line = self._lines.get(ticket.pool, [])
        return (line.index(ticket) + 1 if ticket in line else 0), len(line)

    def is_first(self, ticket: Ticket) -> bool:
        line = self._lines.get(ticket.pool, [])
        return bool(line) and line[0] is ticket

    def lines(self) -> dict[str, list[str]]:
        """Who waits for what, in order."""
        return {pool: [t.holder for t in line] for pool, line in self._lines.items()}

    def waiting_on(self, devices: str, but: Ticket | None = None) -> list[Ticket]:
        """The tickets still waiting that draw on ``devices`` (``policy.lineorder.draws_on``), ``but`` one."""
        return [t for t in self.tickets() if t.devices == devices and t is not but and t.competing]

    def ahead_on_its_devices(self, ticket: Ticket) -> list[Ticket]:
        """The tickets before ``ticket`` in the site's order that draw on the same devices (its own
        line's and the other kinds' on the same GPUs, ``policy.lineorder.draws_on``)."""
        ordered = [t for t in self.in_order() if t.devices == ticket.devices]
        return ordered[: ordered.index(ticket)] if ticket in ordered else []

    def describe(self, ticket: Ticket, now: datetime | None = None) -> str:
        """Its place, as the spawn page shows it, and the estimate of its wait where there is one."""
        place, total = self.position(ticket)
        kept = " (your place was kept across a hub restart)" if ticket.kept else ""
        known = ticket.estimate is not None and ticket.estimate.at is not None
        expected = f"; {ticket.estimate.text(now or self._clock())}" if known else ""
        return f"waiting for a GPU ({ticket.pool}): {ordinal(place)} of {total} in line{kept}{expected}"

    def changed(self) -> None:
        """A device may have been freed, or someone left a line: wake every waiter to try again."""
        self.generation += 1
        self._wake()

    def _wake(self) -> None:
        self.wakes += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for_change(self, timeout: float, seen: int | None = None) -> None:
        """Until the next change, at most ``timeout`` seconds; at once if there was one since ``wakes``
        was ``seen``. Not ``asyncio.wait_for``: on Python 3.11 it drops a cancellation that comes as the
        change does (bpo-42130), and a waiter whose start was cancelled (leaving the line, JupyterHub
        stopping) would wait on to its timeout."""
        if seen is not None and seen != self.wakes:
            return
        change = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({change}, timeout=timeout)
        finally:
            change.cancel()


class Listeners:
    """Whom a service calls after a change that can let a waiting start in (``Services`` adds the GPU
    lines' ``capacity_changed``)."""

    def __init__(self):
        self._listeners: list[Callable[[], None]] = []

    def add(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def __call__(self) -> None:
        for listener in self._listeners:
            listener()
