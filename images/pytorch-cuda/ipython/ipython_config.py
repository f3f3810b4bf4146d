# gpuhub: system-wide IPython config of the single-user image (kernels and terminal IPython).
# A shared-GPU server gets GPUHUB_GPU_MEMORY_BUDGET; this applies it to PyTorch at kernel start.
c.InteractiveShellApp.exec_lines = [  # noqa: F821 (c is IPython's config object)
    "import gpuhub.singleuser.budget as _gpuhub_budget; _gpuhub_budget.apply(); del _gpuhub_budget",
]
