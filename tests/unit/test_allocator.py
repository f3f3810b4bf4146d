"""Placement policy as tables: exclusive, NVLink preference, shared best-fit, MIG, unhealthy devices
skipped, requests that cannot fit now, and requests that can never fit."""

import pytest

from gpuhub.allocator import GpuRequest, Holding, NeverFits, NoFitNow, Placement, place
from gpuhub.inventory import parse_inventory
from tests.unit.test_inventory import POOL, gpu_uuid, mig_uuid

GiB = 1024**3
INV = parse_inventory(POOL, "file:pool.toml")  # GPUs 0-3 H100 (0-1, 2-3 NVLinked), 4 unhealthy, 5 MIG


def G(i):
    return gpu_uuid(i)


def excl(*ids):
    return [Holding(G(i), "exclusive") for i in ids]


def shared(i, gib):
    return Holding(G(i), "shared", gib * GiB)


TABLE = [
    # (what, holdings, request, expected: tuple of uuids | NoFitNow | NeverFits)
    ("first free whole GPU", [], GpuRequest("exclusive"), (G(0),)),
    ("skips held", excl(0), GpuRequest("exclusive"), (G(1),)),
    ("skips shared-held", [shared(0, 10)], GpuRequest("exclusive"), (G(1),)),
    ("nvlink pair preferred", excl(0), GpuRequest("exclusive", count=2), (G(2), G(3))),
    ("nvlink pair, lowest", [], GpuRequest("exclusive", count=2), (G(0), G(1))),
    ("no pair left: any two", excl(0, 2), GpuRequest("exclusive", count=2), (G(1), G(3))),
    ("unhealthy never chosen", excl(0, 1, 2, 3), GpuRequest("exclusive"), NoFitNow),
    ("four free of five whole", [], GpuRequest("exclusive", count=4), (G(0), G(1), G(2), G(3))),
    ("five asked: one is unhealthy", [], GpuRequest("exclusive", count=5), NoFitNow),
    ("more than the pool", [], GpuRequest("exclusive", count=6), NeverFits),
    ("shared best fit packs", [shared(2, 60)], GpuRequest("shared", memory_bytes=20 * GiB), (G(2),)),
    ("shared: too full", [shared(2, 70)], GpuRequest("shared", memory_bytes=20 * GiB), (G(0),)),
    ("shared: tightest wins", [shared(1, 30), shared(3, 50)], GpuRequest("shared", memory_bytes=20 * GiB), (G(3),)),
    ("shared: slots full", [shared(0, 1)] * 4, GpuRequest("shared", memory_bytes=GiB), (G(1),)),
    ("shared: not on exclusive", excl(0), GpuRequest("shared", memory_bytes=GiB), (G(1),)),
    ("shared: all taken", excl(0, 1, 2, 3), GpuRequest("shared", memory_bytes=GiB), NoFitNow),
    ("shared: bigger than any GPU", [], GpuRequest("shared", memory_bytes=81 * GiB), NeverFits),
    ("mig by profile", [], GpuRequest("mig", mig_profile="3g.20gb"), (mig_uuid(2),)),
    ("mig next free", [Holding(mig_uuid(0), "mig")], GpuRequest("mig", mig_profile="1g.5gb"), (mig_uuid(1),)),
    ("mig any profile", [], GpuRequest("mig"), (mig_uuid(0),)),
    ("mig all held", [Holding(mig_uuid(0), "mig"), Holding(mig_uuid(1), "mig")], GpuRequest("mig", mig_profile="1g.5gb"), NoFitNow),
    ("mig unknown profile", [], GpuRequest("mig", mig_profile="7g.80gb"), NeverFits),
]


@pytest.mark.parametrize("what, holdings, request_, expected", TABLE, ids=[t[0] for t in TABLE])
def test_place(what, holdings, request_, expected):
    decision = place(INV, holdings, request_, max_shares=4)
    if isinstance(expected, tuple):
        assert isinstance(decision, Placement), decision
        assert decision.uuids == expected
        assert decision.memory_bytes == request_.memory_bytes
    else:
        assert isinstance(decision, expected), decision
        assert decision.reason


def test_a_mig_enabled_gpu_is_never_handed_out_whole():
    whole_uuids = {G(i) for i in range(4)}
    for count in (1, 2, 3, 4):
        decision = place(INV, [], GpuRequest("exclusive", count=count))
        assert set(decision.uuids) <= whole_uuids


@pytest.mark.parametrize(
    "kwargs", [{"mode": "fractional"}, {"mode": "exclusive", "count": 0}, {"mode": "shared"}, {"mode": "mig", "count": 2}]
)
def test_malformed_requests_are_refused(kwargs):
    with pytest.raises(ValueError):
        GpuRequest(**kwargs)
