"""One order across the GPU lines with a bound on overtaking (``policy.lineorder``), as a table: the
waiters in arrival order (line, devices, times passed over so far), which of them fit now, and who
tries and who is placed in one round."""

from dataclasses import dataclass

import pytest

from gpuhub.policy.allocator import GpuRequest
from gpuhub.policy.lineorder import MIG_SLICES, WHOLE_GPUS, dispatch, draws_on


@dataclass(eq=False)
class W:
    name: str
    pool: str
    devices: str = WHOLE_GPUS
    passed_over: int = 0
    own_quota: bool = False


def run_round(waiters, fits, bound):
    """Drive one round; ``fits``: names that would be placed if they tried. Returns (tried, placed)."""
    tried, placed = [], []
    order = dispatch(waiters, bound)
    try:
        w = next(order)
        while True:
            tried.append(w.name)
            ok = w.name in fits
            if ok:
                placed.append(w.name)
            w = order.send(ok)
    except StopIteration:
        pass
    return tried, placed


X, S, M = "exclusive×1", "shared", "mig:1g.10gb"


@pytest.mark.parametrize(
    "waiters, fits, bound, tried, placed, passed_over",
    [
        # a freed whole GPU: the earlier exclusive request tries first and takes it
        ([W("x", X), W("s1", S), W("s2", S)], {"x", "s1", "s2"}, 3, ["x", "s1", "s2"], ["x", "s1", "s2"], [0, 0, 0]),
        # the exclusive request does not fit, the later shared ones do: they go, and it is passed over
        ([W("x", X), W("s1", S), W("s2", S)], {"s1", "s2"}, 3, ["x", "s1", "s2"], ["s1", "s2"], [2, 0, 0]),
        # ... until the bound: passed over 3 times, nothing behind it on whole GPUs goes
        ([W("x", X, passed_over=3), W("s1", S)], {"s1"}, 3, ["x"], [], [3, 0]),
        # bound 2, passed over once: one more may go, then the rest wait for it
        ([W("x", X, passed_over=1), W("s1", S), W("s2", S), W("s3", S)], {"s1", "s2", "s3"}, 2, ["x", "s1"], ["s1"], [2, 0, 0, 0]),
        # strict order across kinds (bound 0): a shared slot stays unused behind a waiting exclusive request
        ([W("x", X), W("s1", S)], {"s1"}, 0, ["x"], [], [0, 0]),
        # MIG slices are other devices: a blocked exclusive request does not hold back a MIG request
        ([W("x", X, passed_over=3), W("m", M, MIG_SLICES)], {"m"}, 3, ["x", "m"], ["m"], [3, 0]),
        # ... and placing it does not count as passing the exclusive request over
        ([W("x", X), W("m", M, MIG_SLICES)], {"m"}, 0, ["x", "m"], ["m"], [0, 0]),
        # within a line, FIFO: the second exclusive request does not try while the first waits
        ([W("x1", X), W("x2", X), W("s", S)], {"x2", "s"}, 3, ["x1", "s"], ["s"], [1, 0, 0]),
        # a session's reserved devices are its own: nothing outside blocks it, it blocks nothing outside
        ([W("x", X, passed_over=9), W("c", "session lab", "session lab")], {"c"}, 3, ["x", "c"], ["c"], [9, 0]),
        # several placed from one line in one round, while they fit
        ([W("s1", S), W("s2", S), W("s3", S)], {"s1", "s2"}, 3, ["s1", "s2", "s3"], ["s1", "s2"], [0, 0, 0]),
        # two exclusive sizes: the ×2 request waits, the later ×1 fits and goes once
        ([W("x2", "exclusive×2"), W("x1", X)], {"x1"}, 1, ["x2", "x1"], ["x1"], [1, 0]),
        # a job waiting only for its own person's GPUs to free holds back neither its line nor the devices
        ([W("j", X, own_quota=True), W("x", X), W("s", S)], {"x", "s"}, 0, ["j", "x", "s"], ["x", "s"], [0, 0, 0]),
        # ... and is not passed over by those placed after it
        ([W("j", X, passed_over=3, own_quota=True), W("s", S)], {"s"}, 3, ["j", "s"], ["s"], [3, 0]),
        # nobody waiting
        ([], set(), 3, [], [], []),
    ],
)
def test_one_round(waiters, fits, bound, tried, placed, passed_over):
    assert run_round(waiters, fits, bound) == (tried, placed)
    assert [w.passed_over for w in waiters] == passed_over


def test_an_exclusive_request_is_passed_over_at_most_bound_times():
    """Rounds of shared requests that always fit, behind an exclusive one that never does."""
    x = W("x", X)
    placed_ahead = 0
    for i in range(10):
        _, placed = run_round([x, W(f"s{i}", S)], {f"s{i}"}, 4)
        placed_ahead += len(placed)
    assert placed_ahead == 4 and x.passed_over == 4


@pytest.mark.parametrize(
    "request_, line, devices",
    [
        (GpuRequest("exclusive", 2), "exclusive×2", WHOLE_GPUS),
        (GpuRequest("shared", memory_bytes=1), "shared", WHOLE_GPUS),
        (GpuRequest("mig", mig_profile="1g.10gb"), "mig:1g.10gb", MIG_SLICES),
        (GpuRequest("exclusive"), "session lab", "session lab"),
    ],
)
def test_draws_on(request_, line, devices):
    assert draws_on(request_, line) == devices
