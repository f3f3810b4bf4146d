"""One order across the GPU wait lines, with a bound on overtaking: who tries to take a device next.

The lines (``allocator.pool_of``: "exclusive×1", "shared", "mig:1g.10gb", a session's own line) are
FIFO each; across lines, waiters are served in arrival order. The rule, for one round over everyone
waiting, oldest first:

- a waiter tries only if nobody ahead of it in its own line is still waiting (a later request never
  overtakes an earlier one of the same kind);
- a later waiter may still be placed while an earlier one of *another* line that draws on the same
  devices does not fit (a shared slot on a half-used GPU while an exclusive request needs a whole one):
  that earlier waiter is then *passed over* once;
- a waiter that waits only for its own person's GPUs to free (a batch job beyond its person's quota
  while their other work runs: ``own_quota``) holds nobody back: neither its own line nor the devices;
- once a waiter has been passed over ``bound`` times, nobody behind it who draws on the same devices
  is placed until it is: the devices freed from then on are kept for it. ``bound = 0`` is strict arrival
  order across lines.

Whole GPUs (exclusive and shared requests) and MIG slices are different devices: a MIG request never
holds back an exclusive one, nor the reverse. A classroom session's line draws on its own reserved
devices only.

Pure: ``dispatch`` is a generator that yields each waiter to try and is sent whether it was placed.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Protocol

from .allocator import GpuRequest

WHOLE_GPUS = "whole GPUs"
MIG_SLICES = "MIG slices"


class Waiter(Protocol):
    pool: str  # its line
    devices: str  # what it draws on (``draws_on``)
    passed_over: int
    own_quota: bool  # it did not fit only because its own person holds their quota now


def draws_on(request: GpuRequest, line: str) -> str:
    """Which devices a request in ``line`` competes for: a session's line has its own."""
    if line.startswith("session "):
        return line
    return MIG_SLICES if request.mode == "mig" else WHOLE_GPUS


def dispatch(waiters: Sequence[Waiter], bound: int) -> Generator[Waiter, bool, None]:
    """Yield the waiters that may try now, oldest first (``waiters`` in arrival order); send back
    whether each was placed. Increments ``passed_over`` of the earlier waiters a placement overtook."""
    tried_lines: set[str] = set()
    not_placed: list[Waiter] = []  # tried this round, still waiting, oldest first
    for waiter in waiters:
        if waiter.pool in tried_lines:
            continue  # someone ahead of it in its own line is still waiting
        if any(e.devices == waiter.devices and e.passed_over >= bound for e in not_placed):
            tried_lines.add(waiter.pool)
            continue  # an earlier request was passed over often enough: what frees up is kept for it
        placed = yield waiter
        if placed:
            for earlier in not_placed:
                if earlier.devices == waiter.devices:
                    earlier.passed_over += 1
        elif not waiter.own_quota:
            tried_lines.add(waiter.pool)
            not_placed.append(waiter)
