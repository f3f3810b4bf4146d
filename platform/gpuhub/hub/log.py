"""The running application's logger (JupyterHub's), looked up when used, so lines reach the hub log."""

from traitlets.log import get_logger


class _HubLog:
    def __getattr__(self, name):
        return getattr(get_logger(), name)


log = _HubLog()
