"""The running application's logger (JupyterHub's), looked up when used, so lines reach the hub log;
and ``QuietRefusals``, which makes a refused start one line instead of three errors and a traceback."""

from __future__ import annotations

import logging
import sys
import warnings

from traitlets.log import get_logger

from ..policy.errors import SpawnRefused


class _HubLog:
    def __getattr__(self, name):
        return getattr(get_logger(), name)


log = _HubLog()


class QuietRefusals(logging.Filter):
    """A refused start (``SpawnRefused``: the user's request, a quota, no GPU in time) is not a fault
    of the hub. JupyterHub logs it as one: an ERROR with a traceback from the spawner ("Exception
    applying user_options"), another ERROR from the user ("Error starting alice's server"), then
    warnings from the clean-up and the handler. This filter, on the hub log's handlers, turns the first
    record of a refusal into one line, ``gpuhub alice: start refused (403 quota): <message>`` (INFO for
    a 4xx, WARNING for a 503), and drops the others logged while that refusal is being handled (the
    request's access-log line stays). Real faults keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        refusal = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if not isinstance(refusal, SpawnRefused) or record.name.startswith("gpuhub"):
            return True
        if getattr(refusal, "logged", False):
            return False
        refusal.logged = True
        record.msg, record.args = "gpuhub %s: start refused (%d %s): %s", (
            getattr(refusal, "holder", "?"), refusal.status_code, refusal.why, refusal.message,
        )
        record.levelno = logging.WARNING if refusal.status_code >= 500 else logging.INFO
        record.levelname = logging.getLevelName(record.levelno)
        record.exc_info = record.exc_text = None
        return True


def quiet_the_hub_log() -> None:
    """Install the filters on the hub log's handlers (JupyterHub's and tornado's records reach them)."""
    hub_log = get_logger()
    for handler in hub_log.handlers:
        if not any(isinstance(f, QuietRefusals) for f in handler.filters):
            handler.addFilter(QuietRefusals())
    try:
        from jupyter_events.schema import JupyterEventsVersionWarning

        warnings.filterwarnings("ignore", category=JupyterEventsVersionWarning)
    except ImportError:
        pass
    # JupyterHub's own column type (orm.JSONDict, e.g. Spawner.user_options, which the sessions page
    # reads) does not say whether SQLAlchemy may cache it: a performance note about upstream code that
    # an operator cannot act on
    warnings.filterwarnings("ignore", message=r"TypeDecorator JSONDict\(\) will not produce a cache key")
