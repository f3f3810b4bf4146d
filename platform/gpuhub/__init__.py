"""gpuhub: a multi-user JupyterHub GPU workspace platform: the hub side and the single-user side in
one distribution, one room per concern (docs/architecture.md, "The rooms").

Entry points: ``gpuhub.hub.spawner.GPUSpawner`` (``jupyterhub.spawners: gpuhub``),
``gpuhub.hub.auth.GPUHubAuthenticator`` (``jupyterhub.authenticators: gpuhub-native``),
``gpuhub.hub.hubconfig.apply_site_settings`` (called by ``jupyterhub_config.py``), the
``gpuhub.singleuser`` server extension (in the user image), and the commands ``gpuhub``
(``gpuhub.cli``) and ``gpuhub-settings`` (``gpuhub.config.check``).
"""

__version__ = "0.1.0"
