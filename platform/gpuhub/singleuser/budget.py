"""A shared GPU's memory budget, applied to PyTorch in every IPython kernel (soft isolation).

The hub gives a ``shared`` server ``GPUHUB_GPU_MEMORY_BUDGET`` (bytes). At kernel start (the
image's ``ipython_config.py`` calls ``apply()``) the budget becomes
``torch.cuda.set_per_process_memory_fraction(budget / device memory)`` on each visible device. It is
registered to run when CUDA initialises, so a kernel that never touches the GPU pays nothing and
creates no CUDA context. Soft isolation: PyTorch's caching allocator refuses allocations beyond the
budget (an out-of-memory error in the user's own kernel), but code outside PyTorch's allocator (other
libraries, raw CUDA) is not held to it. MIG slices are the hard-isolation choice.
"""

from __future__ import annotations

import os

from ..contract import GPU_MEMORY_BUDGET_ENV as ENV
registered: int | None = None  # the budget registered in this process (for checks and the env check)


def fraction(budget_bytes: int, total_bytes: int) -> float:
    """The share of a device's memory the budget allows, within (0, 1]."""
    if budget_bytes <= 0 or total_bytes <= 0:
        raise ValueError("budget and device memory must be above 0")
    return min(1.0, budget_bytes / total_bytes)


def apply(environ=None) -> int | None:
    """Register the budget from the environment with PyTorch; the budget in bytes, or None if none."""
    global registered
    value = (environ if environ is not None else os.environ).get(ENV, "")
    if not value.isdigit() or int(value) <= 0:
        return None
    try:
        import torch
    except ImportError:
        return None
    budget = int(value)

    def set_fractions():
        for index in range(torch.cuda.device_count()):
            total = torch.cuda.get_device_properties(index).total_memory
            torch.cuda.set_per_process_memory_fraction(fraction(budget, total), index)

    if torch.cuda.is_initialized():
        set_fractions()
    else:
        torch.cuda._lazy_call(set_fractions)  # PyTorch's own hook for work at CUDA initialisation
    registered = budget
    return budget
