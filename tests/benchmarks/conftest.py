"""Benchmarks tier: each script of ``benchmarks/`` run once with tiny sizes (``test_smoke.py``). Runs after
the Swarm tier (whose cluster is gone by then: ``swarm.py`` builds its own) and before e2e; needs what the
scripts need: the engine, the built images, root for the Swarm."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/benchmarks/" in str(item.fspath):
            item.add_marker(pytest.mark.benchmarks)
