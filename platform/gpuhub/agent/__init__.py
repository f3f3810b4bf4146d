"""``gpuhub-agent``: the hub-managed service that acts on servers through the hub's own REST API.

- classroom sessions (``sessions.SessionRunner``): prewarm the roster's servers before a window (and
  when an instructor asks), stop them when asked or at the end of a window, with bounded concurrency;
- GPU-idle reclaim (``reclaim.Reclaimer``): NVML utilisation per device and JupyterHub activity; an
  idle GPU server is warned in JupyterLab, then stopped, its GPU freed, its files kept.

Its core is ``Agent.round()``, which takes its clock, its hub client and its device readings as
arguments (the tests move the clock and feed a simulated reading); ``python -m gpuhub.agent`` runs
it every few seconds with the real ones. It holds only the scopes of the ``gpuhub-agent`` role.
"""
