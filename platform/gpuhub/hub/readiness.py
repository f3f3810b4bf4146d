"""When a started server answers: JupyterHub's own check, asked every ``POLL_SECONDS``.

``jupyterhub.utils.wait_for_http_server`` waits between its tries with an exponential backoff
(0.2 s doubling, with jitter, up to 5 s): a server that answers 4 s after its container started is
found up to 3 s late, and a start waits for that (benchmarks/boot.py measured "listening → ready"
at 1.7–3.5 s against 0.07 s for a plain poll). Here the same check (any non-5xx answer; the same
errors tolerated) runs in slices of ``POLL_SECONDS``, so a server is seen at most that late.
"""

from __future__ import annotations

import time

from jupyterhub.utils import wait_for_http_server

POLL_SECONDS = 0.1


async def wait_answering(url: str, timeout: float, poll: float = POLL_SECONDS) -> None:
    """Return once ``url`` answers; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await wait_for_http_server(url, timeout=min(poll, max(deadline - time.monotonic(), 0.01)))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Server at {url} didn't respond in {timeout} seconds") from None
