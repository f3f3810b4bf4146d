"""Idle GPUs lent beyond quota and taken back: the ``[borrowing]`` table (the rules: ``policy.borrowing``)."""

from __future__ import annotations

from traitlets import Integer, List, Unicode

from .sections import Section, SettingsError


class Borrowing(Section):
    section_help = """Borrowing beyond the GPU quota. While GPUs sit free, a user at their ``max_gpus`` (or
    ``max_shared_slices``) may still start a profile listed here, on a *borrowed* GPU, marked so on the
    form, their home page and in JupyterLab. When someone within their quota then waits for a GPU, the
    newest borrower whose GPU would let them in is warned, given ``grace_period``, then stopped (files
    kept, a notice says why), and the waiter gets the GPU. A server started within quota is never
    stopped for this, nor a borrower's server for a classroom session during its window. Off by default
    (no ``profiles``)."""

    profiles = List(
        Unicode(),
        help="""The GPU profiles that may run on borrowed GPUs; empty: borrowing is off. Weekly GPU-hours
        (``gpu_hours_per_week``) are never borrowed, only the number of GPUs held. Example:
        ``["gpu-1", "shared-20g"]``.""",
    ).tag(accepted="a list of GPU profile names")

    groups = List(
        Unicode(),
        help="""The JupyterHub groups whose members may borrow; empty: everyone who may use the profile.
        Example: ``["ml-lab"]``.""",
    ).tag(accepted="a list of group names")

    grace_period = Integer(
        600,
        help="""Seconds between the warning a borrower's JupyterLab shows ("someone within their quota is
        waiting for this GPU; it will be stopped at 14:32 UTC") and the stop: time to save work. The
        waiter's spawn page counts it in its estimate. Example: ``900``.""",
        min=0,
        max=24 * 3600,
    ).tag(accepted="seconds, from 0 to 86400")

    def allows(self, profile: str, groups) -> bool:
        """Whether a member of ``groups`` may start ``profile`` on a borrowed GPU."""
        return profile in self.profiles and (not self.groups or bool(set(self.groups).intersection(groups)))

    def check(self, root, where: str) -> None:
        gpu_profiles = sorted(p.name for p in root.profiles if p.wants_gpu)
        for name in self.profiles:
            if name not in gpu_profiles:
                raise SettingsError(
                    f"{where}.profiles: {name!r} is not a GPU profile. Accepted: {', '.join(gpu_profiles) or 'no GPU profile is defined'}",
                    f"{where}.profiles",
                )
