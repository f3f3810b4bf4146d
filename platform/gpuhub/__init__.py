"""gpuhub: a multi-user JupyterHub GPU workspace platform (hub side; the single-user side joins it).

Hub-side entry points: ``gpuhub.spawner.GPUSpawner`` (``jupyterhub.spawners: gpuhub``),
``gpuhub.auth.GPUHubAuthenticator`` (``jupyterhub.authenticators: gpuhub-native``) and
``gpuhub.hubconfig.apply_site_settings`` (called by ``jupyterhub_config.py``).
"""

__version__ = "0.1.0"
