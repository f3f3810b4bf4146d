"""Backup and restore of a one-host gpuhub (``gpuhub backup``, ``gpuhub restore``; docs/admin.md,
"Backup and restore").

- ``archive``: what a backup archive holds and how it is checked (pure: names, the manifest, checksums).
- ``volumes``: a Docker volume's files out of and into the engine (docker-py, through a helper
  container that is created but never started).
- ``service``: a backup of the running hub, and a restore onto a stopped or fresh one.
"""
