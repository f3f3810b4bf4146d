"""Unit-tier fixtures: ``clock`` (a clock the test moves: set ``clock.now``) and ``store`` (gpuhub's
store on a fresh SQLite file, reading that clock). A module may override ``clock`` to start elsewhere."""

from datetime import datetime

import pytest

from gpuhub.store import Store


class FakeClock:
    def __init__(self, now: datetime = datetime(2026, 1, 5, 9, 0, 0)):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    return Store.from_url(f"sqlite:///{tmp_path}/hub.sqlite", clock=clock)
