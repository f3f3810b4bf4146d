"""gpuhub's JupyterHub config: defaults → the site settings file → jupyterhub_config.d/*.py.

Site choices go in settings.toml (or the file $GPUHUB_SETTINGS names); anything JupyterHub-level
that the settings do not cover (an OAuth authenticator's secrets, say) goes in a drop-in file in
jupyterhub_config.d/ ($GPUHUB_CONFIG_D names another folder). See docs/admin.md.
"""

import os

from gpuhub.hub.hubconfig import apply_site_settings, config_d_files, serve_gpuhub_pages, settings_path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)
here = os.path.dirname(os.path.abspath(__file__))
settings = apply_site_settings(c, settings_path(here))
for path in config_d_files(here):
    load_subconfig(path)  # noqa: F821
serve_gpuhub_pages(c, settings)  # through whichever authenticator the drop-ins left
