"""Placement policy as tables: exclusive, NVLink preference, shared best-fit, MIG, unhealthy devices
skipped, requests that cannot fit now, and requests that can never fit."""

import pytest

from gpuhub.policy.allocator import GpuRequest, Holding, NeverFits, NoFitNow, Placement, place
from gpuhub.inventory.file import parse_inventory
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


# --- capacity as the spawn form shows it, and the wait lines requests join ---------------------------
from gpuhub.policy.allocator import capacity, pool_of  # noqa: E402

CAPACITY = [
    # (holdings, request, free, total, text)
    ([], GpuRequest("exclusive"), 4, 5, "4 of 5 NVIDIA H100 80GB HBM3 free"),  # GPU 4 is unhealthy
    (excl(0, 2), GpuRequest("exclusive", count=2), 2, 5, "2 of 5 NVIDIA H100 80GB HBM3 free (2 needed)"),
    ([shared(1, 10)], GpuRequest("exclusive"), 3, 5, "3 of 5 NVIDIA H100 80GB HBM3 free"),
    ([], GpuRequest("shared", memory_bytes=20 * GiB), 16, 20, "shared: 16 slices free"),  # 4 healthy × min(4, 80/20)
    ([shared(0, 70)] + excl(1, 2), GpuRequest("shared", memory_bytes=20 * GiB), 4, 20, "shared: 4 slices free"),
    ([], GpuRequest("mig", mig_profile="1g.5gb"), 2, 2, "1g.5gb: 2 of 2 slices free"),
    ([Holding(mig_uuid(0), "mig")], GpuRequest("mig"), 2, 3, "MIG: 2 of 3 slices free"),
    ([], GpuRequest("mig", mig_profile="7g.80gb"), 0, 0, "no 7g.80gb slice on this host"),
]


@pytest.mark.parametrize("holdings, request_, free, total, text", CAPACITY)
def test_capacity(holdings, request_, free, total, text):
    c = capacity(INV, holdings, request_)
    assert (c.free, c.total, c.text) == (free, total, text)


@pytest.mark.parametrize(
    "request_, pool",
    [
        (GpuRequest("exclusive"), "exclusive×1"),
        (GpuRequest("exclusive", count=4), "exclusive×4"),
        (GpuRequest("shared", memory_bytes=GiB), "shared"),
        (GpuRequest("mig", mig_profile="1g.5gb"), "mig:1g.5gb"),
        (GpuRequest("mig"), "mig:any"),
    ],
)
def test_pool_of(request_, pool):
    assert pool_of(request_) == pool


# --- a property: whatever is held, a placement never double-assigns or overfills --------------------
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

REQUESTS = st.one_of(
    st.builds(GpuRequest, st.just("exclusive"), st.integers(1, 3)),
    st.builds(GpuRequest, st.just("shared"), st.just(1), st.sampled_from([10 * GiB, 20 * GiB, 40 * GiB])),
    st.builds(GpuRequest, st.just("mig"), st.just(1), st.just(0), st.sampled_from(["", "1g.5gb", "3g.20gb"])),
)


@hsettings(max_examples=300, deadline=None)
@given(st.lists(REQUESTS, max_size=25), st.integers(1, 4))
def test_sequences_of_placements_never_double_assign_or_overfill(requests, max_shares):
    holdings = []
    for r in requests:
        decision = place(INV, holdings, r, max_shares)
        if isinstance(decision, Placement):
            holdings += [Holding(u, r.mode, decision.memory_bytes) for u in decision.uuids]
    by_uuid = {}
    for h in holdings:
        by_uuid.setdefault(h.uuid, []).append(h)
    for uuid, on in by_uuid.items():
        if any(h.mode in ("exclusive", "mig") for h in on):
            assert len(on) == 1, (uuid, on)  # exclusive GPUs and MIG slices have one holder
        else:
            gpu = INV.by_uuid[uuid]
            assert len(on) <= max_shares and sum(h.memory_bytes for h in on) <= gpu.memory_bytes
        assert INV.by_uuid.get(uuid) is None or INV.by_uuid[uuid].healthy


# --- several nodes (a Swarm): a server's GPUs are in one machine; best fit across nodes -------------
def _two_nodes():
    """node "big": GPUs 0-3 (0-1, 2-3 NVLinked); node "small": GPUs 6-7 (not linked)."""
    from dataclasses import replace as copy

    gpus = [copy(g, node="big") for g in INV.gpus if g.index < 4]
    text = "\n".join(
        f'[[gpus]]\nuuid = "{G(i)}"\nname = "simulated H100"\nmemory = "80G"\n' for i in (6, 7)
    )
    gpus += [copy(g, node="small") for g in parse_inventory(text, "file:small.toml").gpus]
    return copy(INV, gpus=tuple(gpus))


NODES = _two_nodes()
NODE_TABLE = [
    ("one GPU: the fuller node first (best fit)", excl(6), GpuRequest("exclusive"), (G(7),)),
    ("two GPUs: the node they fill", [], GpuRequest("exclusive", count=2), (G(6), G(7))),
    ("two GPUs: the other node when one is short", excl(7), GpuRequest("exclusive", count=2), (G(0), G(1))),
    ("three GPUs: only the big node has them", [], GpuRequest("exclusive", count=3), (G(0), G(1), G(2))),
    ("free in total but split across nodes", excl(0, 1, 2, 6), GpuRequest("exclusive", count=2), NoFitNow),
    ("more than any one node", [], GpuRequest("exclusive", count=5), NeverFits),
]


@pytest.mark.parametrize("what, holdings, request_, expected", NODE_TABLE, ids=[t[0] for t in NODE_TABLE])
def test_place_across_nodes(what, holdings, request_, expected):
    decision = place(NODES, holdings, request_, max_shares=4)
    if isinstance(expected, tuple):
        assert isinstance(decision, Placement), decision
        assert decision.uuids == expected
        assert len({NODES.by_uuid[u].node for u in decision.uuids}) == 1
    else:
        assert isinstance(decision, expected), decision
        assert decision.reason


def test_split_free_gpus_say_why_and_a_too_large_request_names_the_largest_node():
    split = place(NODES, excl(0, 1, 2, 6), GpuRequest("exclusive", count=2))
    assert "no node has that many free together" in split.reason
    never = place(NODES, [], GpuRequest("exclusive", count=5))
    assert "the largest node has 4" in never.reason


def test_shared_ties_across_nodes_go_to_the_first_in_inventory_order():
    """Each node numbers its GPUs from 0: equally free GPUs of the same index on two nodes are a tie,
    broken by inventory order (comparing the GPUs themselves raised a TypeError)."""
    from dataclasses import replace as copy

    pair = copy(INV, gpus=(copy(INV.gpus[0], node="a"), copy(INV.gpus[0], uuid=G(9), node="b")))
    assert place(pair, [], GpuRequest("shared", memory_bytes=GiB)).uuids == (G(0),)
    assert place(pair, [shared(0, 1)], GpuRequest("shared", memory_bytes=GiB)).uuids == (G(0),)  # best fit still first
