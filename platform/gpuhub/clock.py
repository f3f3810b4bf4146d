"""The one clock gpuhub reads. Tests pass their own callable where a component takes ``clock``."""

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC, as JupyterHub's database stores times."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
