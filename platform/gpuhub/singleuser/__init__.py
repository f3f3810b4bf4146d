"""The single-user side of gpuhub: what runs inside a user's container (the server extension, the
GPU reader, the environment check, the shared-GPU budget)."""


def _jupyter_server_extension_points():
    from .app import GpuHubExtension

    return [{"module": "gpuhub.singleuser.app", "app": GpuHubExtension}]
