"""The hub side in the JupyterHub process: ``spawner`` (GPUSpawner, thin glue), ``services`` (the
hub's services and how they are wired: ``allocation``, ``quotas``, ``sessions``, ``notices``,
``accounting``, ``admission``), ``progress`` (one start's progress), ``waitqueue`` (FIFO lines),
``database`` (opening gpuhub's tables), ``hubconfig`` (settings file → JupyterHub config), ``auth``
(the default authenticator) and ``log``."""
