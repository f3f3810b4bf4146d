"""Pure policy: no Docker, no database, no hub. Settings and state in; decisions, messages and
objects out; tested by parametrised tables.

- ``profiles``: which profiles a user may pick; which one a request means.
- ``quotas``: rules resolved user > group > default; why a start exceeds its quota.
- ``allocator``: where a GPU request goes (exclusive, shared, MIG; health, NVLink).
- ``decide``: one start's decision (quota, classroom reservations, placement).
- ``sessions``: classroom sessions (windows, reservations) and roster CSVs.
- ``accounting``: GPU-hours arithmetic, reports, the weekly verdict on running servers.
- ``containers``: a user container's objects; ``slugs``: Docker-safe per-user names.
- ``form``: the spawn form (rendering, shaping form data; no validation).
- ``errors``: the typed refusals (``SpawnRefused``: a 4xx with a message for people).
"""
