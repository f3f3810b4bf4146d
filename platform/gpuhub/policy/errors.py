"""Typed refusals. Each is an HTTP error JupyterHub passes through to the form page or the REST
client with its message, so a person reads why, and a 4xx status says it was the request."""

from tornado import web


class SpawnRefused(web.HTTPError):
    """A spawn request gpuhub will not carry out. ``reason`` is a short machine-readable word
    (``"options"``, ``"profile"``, ``"forbidden"``, ``"gpu-unavailable"``) for logs and clients."""

    def __init__(self, status_code: int, message: str, *, why: str):
        # tornado formats log_message with %-args only when args are given, so '%' in a name is safe
        super().__init__(status_code, log_message=message, reason=None)
        self.message = message
        self.why = why

    def __str__(self) -> str:
        return self.message


class ServerDidNotAnswer(RuntimeError):
    """A container started but its server never answered HTTP within ``[spawner] start_timeout``.
    (A plain ``TimeoutError`` would make JupyterHub report the spawn's whole timeout, queues
    included, as if the start had taken that long.)"""

