"""gpuhub's tables in the hub's database: the models (``models``), the connection and its
serialised transactions (``database``), one store per kind of record (``allocations``, ``usage``,
``quotas``, ``sessions``) and the alembic migrations (``migrations/``). Synchronous: the hub's
services call the stores on their own worker threads."""
