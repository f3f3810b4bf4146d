"""gpuhub's admin side: pages, REST API, CLI and Prometheus metrics, inside the hub process.

``views`` and ``payloads`` are pure (inventory, allocations and request bodies in; JSON-ready rows or
a ``BadRequest`` naming the field out); ``handlers`` is the thin tornado glue under JupyterHub's
RBAC; ``metrics`` feeds the hub's ``/metrics``; ``cli`` is the ``gpuhub`` command over the REST API.
"""
