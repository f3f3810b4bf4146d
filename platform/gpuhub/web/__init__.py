"""gpuhub's pages and REST API inside the hub process, under JupyterHub's RBAC: ``scopes`` (the
custom scopes), ``base`` (the handlers' shared behaviour: one JSON error shape), ``admin`` (GPUs,
quotas, usage, the line, notices, the admin page), ``sessions`` (classroom sessions, the sessions
page), ``metrics`` (the hub's ``/metrics``), ``routes`` (what the authenticator serves: ``gpuhub.hub.auth.GPUHubPages``).
``payloads`` (request bodies to values, or a 400 naming the field) and ``views`` (state to JSON rows)
are pure. Handlers call the hub's services (``hub.services``) and nothing else."""
