"""Who goes first in the GPU lines: the ``[fairness]`` table (the rule itself: ``policy.fairness``)."""

from __future__ import annotations

from traitlets import Dict, Enum, Float, Integer, validate

from .sections import Section, group_integers

FIFO, FAIR_SHARE = "fifo", "fair-share"
POLICIES = (FIFO, FAIR_SHARE)
MAX_PRIORITY = 1000


class Fairness(Section):
    section_help = """The order of the GPU wait lines. ``"fifo"``: first come, first served. ``"fair-share"``:
    a higher-priority group first, then whoever used fewer GPU-hours lately, each person counted once
    however many starts they have waiting, then arrival. The admin's Queue tab shows each waiter's
    reason."""

    policy = Enum(
        list(POLICIES),
        FIFO,
        help="""How waiters for a GPU are ordered: ``"fifo"`` (arrival) or ``"fair-share"`` (priority,
        one start per person at a time, recent GPU-hours, then arrival). Example: ``"fair-share"``.""",
    ).tag(accepted='"fifo" or "fair-share"')

    half_life_hours = Float(
        168.0,
        help="""Fair share: how fast past use is forgiven. A GPU-hour used this long ago counts half, twice
        as long ago a quarter. Example: ``168`` (a week).""",
        min=1.0,
        max=24.0 * 365,
    ).tag(accepted="hours, from 1 to 8760")

    group_priority = Dict(
        help="""Fair share: priorities of JupyterHub groups (higher goes first; a waiter has the highest of
        its groups'; default 0). Example: ``{ "ml-lab" = 10, "staff" = 5 }``.""",
    ).tag(accepted="a table of group names to integers from 0 to 1000")

    session_priority = Integer(
        0,
        help="""Fair share: the priority of a start for a classroom session during its window (a course's
        students ahead of research during their class), unless a group gives more. Example: ``100``.""",
        min=0,
        max=MAX_PRIORITY,
    )

    @validate("group_priority")
    def _validate_group_priority(self, proposal):
        return group_integers(proposal["value"], 0, MAX_PRIORITY, "priority")
