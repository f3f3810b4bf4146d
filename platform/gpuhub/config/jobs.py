"""Batch jobs: the ``[jobs]`` table (the job rules: ``policy.jobs``; the service: ``hub.jobs``)."""

from __future__ import annotations

from traitlets import Dict, Integer, validate

from .sections import Section, group_integers

MAX_WALL_TIME = 30 * 24 * 3600


class Jobs(Section):
    section_help = """Batch jobs: ``gpuhub job submit --profile gpu-1 train.py -- --epochs 3`` (or the REST API)
    runs a script or notebook in the person's image, home and datasets, non-root and capped as their
    servers are, once the profile's GPUs are free: it waits in the same GPU lines, under the same quotas,
    fair share and accounting as servers. Its output is kept in the home (``~/gpuhub-jobs/ID/output.log``);
    exit status, duration and GPU-hours are recorded. GPU-idle reclaim and culling never stop a job; its
    wall time does. One Docker host only (the Swarm engine refuses jobs)."""

    wall_time = Integer(
        24 * 3600,
        help="""The longest a job may run, in seconds, unless ``group_wall_time`` gives its person more; a
        job asks for less with ``--wall-time``. At the limit the job is stopped (SIGTERM, then SIGKILL
        after 10 s) and recorded "timed out". Example: ``86400`` (a day).""",
        min=60,
        max=MAX_WALL_TIME,
    ).tag(accepted="seconds, from 60 to 2592000 (30 days)")

    group_wall_time = Dict(
        help="""The longest a job of a member of these JupyterHub groups may run, in seconds (the highest
        of a person's groups, and never less than ``wall_time``). Example: ``{ "ml-lab" = 259200 }``.""",
    ).tag(accepted="a table of group names to seconds from 60 to 2592000")

    max_queued_per_user = Integer(
        20,
        help="""How many jobs one person may have waiting or running at once (more is refused, 409):
        a queue is not a place to park a thousand runs. Example: ``50``.""",
        min=1,
        max=10_000,
    ).tag(accepted="an integer from 1 to 10000")

    max_wait = Integer(
        7 * 24 * 3600,
        help="""How long a job may wait in line for its GPUs, in seconds, before it is refused ("failed",
        with why): a job waits for a GPU to free up overnight, not for ever. Servers wait ``[gpus]
        queue_timeout``. Example: ``172800`` (two days).""",
        min=60,
        max=MAX_WALL_TIME,
    ).tag(accepted="seconds, from 60 to 2592000 (30 days)")

    @validate("group_wall_time")
    def _validate_group_wall_time(self, proposal):
        return group_integers(proposal["value"], 60, MAX_WALL_TIME, "wall time in seconds")

    def limit_for(self, groups) -> int:
        """The longest a job of a member of ``groups`` may run, in seconds."""
        return max([self.wall_time, *(self.group_wall_time.get(g, 0) for g in groups)])
