"""The shared-GPU memory budget applied to PyTorch at kernel start (soft isolation)."""

import pytest

from gpuhub.singleuser import budget

GiB = 1024**3


@pytest.mark.parametrize(
    "budget_bytes, total, share",
    [(20 * GiB, 80 * GiB, 0.25), (40 * GiB, 80 * GiB, 0.5), (100 * GiB, 80 * GiB, 1.0), (1, 4, 0.25)],
)
def test_fraction(budget_bytes, total, share):
    assert budget.fraction(budget_bytes, total) == share


@pytest.mark.parametrize("budget_bytes, total", [(0, 80), (10, 0), (-1, 80)])
def test_fraction_refuses_nonsense(budget_bytes, total):
    with pytest.raises(ValueError):
        budget.fraction(budget_bytes, total)


@pytest.mark.parametrize("environ", [{}, {"GPUHUB_GPU_MEMORY_BUDGET": ""}, {"GPUHUB_GPU_MEMORY_BUDGET": "lots"}, {"GPUHUB_GPU_MEMORY_BUDGET": "0"}])
def test_no_budget_does_nothing(environ):
    assert budget.apply(environ) is None
