"""The wait lines: FIFO per pool, places as people read them, leaving wakes the others."""

import asyncio

import pytest

from gpuhub.hub.waitqueue import WaitQueue, ordinal


@pytest.mark.parametrize("n, text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"), (21, "21st"), (102, "102nd"), (111, "111th")])
def test_ordinal(n, text):
    assert ordinal(n) == text


def test_fifo_per_pool_and_places():
    q = WaitQueue()
    a, b, c = q.join("exclusive×1", "a"), q.join("exclusive×1", "b"), q.join("exclusive×1", "c")
    other = q.join("shared", "d")
    assert [q.position(t) for t in (a, b, c, other)] == [(1, 3), (2, 3), (3, 3), (1, 1)]
    assert q.is_first(a) and not q.is_first(b) and q.is_first(other)
    assert q.describe(c) == "waiting for a GPU (exclusive×1): 3rd of 3 in line"
    q.leave(b)  # a cancelled spawn leaves the line
    assert q.position(c) == (2, 2) and q.position(b) == (0, 2)
    q.leave(a)
    assert q.is_first(c)
    assert q.lines() == {"exclusive×1": ["c"], "shared": ["d"]}
    q.leave(c)
    q.leave(c)  # twice is harmless
    assert q.lines() == {"shared": ["d"]}


async def test_leaving_wakes_waiters_and_wait_times_out():
    q = WaitQueue()
    a = q.join("p", "a")
    waiter = asyncio.ensure_future(q.wait_for_change(30))
    await asyncio.sleep(0)
    q.leave(a)
    await asyncio.wait_for(waiter, 1)  # woken at once, not after 30 s
    await q.wait_for_change(0.01)  # nothing changes: returns after the timeout


async def test_a_cancelled_wait_ends_even_when_a_change_comes_in_the_same_moment():
    """JupyterHub cancels a waiting start (the person left the line) just as someone else's leaving
    wakes the line: the wait must end cancelled, not carry on to its timeout (``asyncio.wait_for``
    on Python 3.11 dropped that cancellation)."""
    queue = WaitQueue()
    wait = asyncio.ensure_future(queue.wait_for_change(30))
    await asyncio.sleep(0)  # it waits
    queue.changed()  # the change...
    wait.cancel()  # ...and the cancellation, in the same tick
    with pytest.raises(asyncio.CancelledError):
        await wait


async def test_a_change_between_looking_and_waiting_is_not_missed():
    """A waiter notes ``wakes``, then awaits other things (its estimate, a placement round) while the
    line changes: its wait returns at once instead of sleeping to the next recheck."""
    queue = WaitQueue()
    seen = queue.wakes
    queue.changed()  # meanwhile
    await asyncio.wait_for(queue.wait_for_change(30, seen), 1)
    seen = queue.wakes
    with pytest.raises(asyncio.TimeoutError):  # nothing new: it waits
        await asyncio.wait_for(queue.wait_for_change(30, seen), 0.2)
