"""100 concurrent allocation attempts against a real SQLite file and a real PostgreSQL server:
0 double-assigned exclusive GPUs, 0 overfilled shared GPUs, every attempt answered."""

import threading
from collections import defaultdict

import pytest

from gpuhub.policy.allocator import GpuRequest, NoFitNow
from gpuhub.inventory.file import parse_inventory
from gpuhub.db.allocations import AllocationStore
from gpuhub.db.database import Database
from gpuhub.db.records import Allocation
from gpuhub.policy.decide import SiteRules, Start
from tests.pgserver import PostgresServer

GiB = 1024**3
ATTEMPTS = 100
MAX_SHARES = 4
POOL = "\n".join(
    f'[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-{i:012d}"\nname = "simulated H100"\nmemory = "80G"\n'
    for i in range(8)
)


def request_for(i: int) -> GpuRequest:
    """A mix: single and paired exclusive GPUs, and shared budgets of 10 to 40 GiB."""
    if i % 3 == 0:
        return GpuRequest("exclusive", count=1 + (i % 2))
    return GpuRequest("shared", memory_bytes=(10 + 10 * (i % 4)) * GiB)


def hammer(store: AllocationStore):
    inventory = parse_inventory(POOL, "file:race.toml")
    barrier = threading.Barrier(ATTEMPTS)
    answers, errors = [None] * ATTEMPTS, []

    def attempt(i):
        barrier.wait(timeout=60)
        try:
            start = Start(f"user{i}", "", (), "race", request_for(i), GiB, 1.0)
            answers[i] = store.allocate(inventory, start, SiteRules((), MAX_SHARES, "rolling"))
        except Exception as e:  # collected and reported below: the test must see every failure
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(ATTEMPTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return inventory, answers, errors


def check_invariants(store: AllocationStore, inventory):
    exclusive, shared = defaultdict(int), defaultdict(list)
    for a in store.live():
        for uuid in a.uuids:
            (exclusive if a.mode == "exclusive" else shared)[uuid] += [a.memory_bytes] if a.mode != "exclusive" else 1
    doubles = [u for u, n in exclusive.items() if n > 1]
    mixed = [u for u in exclusive if u in shared]
    overfilled = [
        u for u, budgets in shared.items()
        if len(budgets) > MAX_SHARES or sum(budgets) > inventory.by_uuid[u].memory_bytes
    ]
    return doubles, mixed, overfilled


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield AllocationStore(Database.open(f"sqlite:///{tmp_path}/race.sqlite"))
        return
    with PostgresServer() as pg:
        s = AllocationStore(Database.open(pg.create_database("race")))
        yield s
        s.db.engine.dispose()


def test_concurrent_allocations_never_double_assign(store):
    inventory, answers, errors = hammer(store)
    assert not errors, errors
    assert all(a is not None for a in answers), "an attempt got no answer"
    granted = [a for a in answers if isinstance(a, Allocation)]
    waiting = [a for a in answers if isinstance(a, NoFitNow)]
    assert len(granted) + len(waiting) == ATTEMPTS
    assert granted and waiting  # the pool filled up: the race was real
    doubles, mixed, overfilled = check_invariants(store, inventory)
    assert (doubles, mixed, overfilled) == ([], [], [])
    assert len(store.live()) == len(granted)
