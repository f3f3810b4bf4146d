"""Unit-tier fixtures (no Docker):

- ``clock``: a clock the test moves (set ``clock.now``); a module may override it to start elsewhere.
- ``db``: gpuhub's tables on a fresh SQLite file (``gpuhub.db.database.Database``), reading that clock.
- ``store``: the stores over ``db`` (``store.allocations``, ``.usage``, ``.quotas``, ``.sessions``),
  and ``store.allocate(inventory, request, user, server, profile, ...)`` for a start's decision.
"""

from datetime import datetime

import pytest

from gpuhub.db.allocations import AllocationStore
from gpuhub.db.database import Database
from gpuhub.db.quotas import QuotaStore
from gpuhub.db.sessions import SessionStore
from gpuhub.db.usage import UsageStore
from gpuhub.policy.decide import SiteRules, Start

GiB = 1024**3
RULES = SiteRules(quota_rules=(), max_shares=4, week="rolling")


class FakeClock:
    def __init__(self, now: datetime = datetime(2026, 1, 5, 9, 0, 0)):
        self.now = now

    def __call__(self):
        return self.now


class Stores:
    def __init__(self, db: Database):
        self.db = db
        self.allocations = AllocationStore(db)
        self.usage = UsageStore(db)
        self.quotas = QuotaStore(db)
        self.sessions = SessionStore(db)

    def allocate(self, inventory, request, username, server="", profile="gpu-1", *, groups=(), session="", rules=RULES):
        """A GPU start's decision, recorded: the ``Allocation``, or why nothing was placed."""
        start = Start(username, server, tuple(groups), profile, request, 4 * GiB, 1.0, session)
        return self.allocations.allocate(inventory, start, rules)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db(tmp_path, clock):
    return Database.open(f"sqlite:///{tmp_path}/hub.sqlite", clock)


@pytest.fixture
def store(db):
    return Stores(db)
