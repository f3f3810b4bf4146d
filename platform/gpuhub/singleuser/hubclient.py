"""A user's server asks the hub through a client that keeps no connection and has a time limit.

JupyterHub 6's single-user server asks the hub (token checks, activity) through one shared aiohttp
session that keeps idle connections for reuse, and it gives that client no configuration. When the
hub's container dies and a new one starts (kill -9, the engine restarted, an upgrade), those
connections are dead: a request sent on one waited for aiohttp's five-minute default (a token check
on a running server hung; the Swarm tier's hub-kill test). Here every request opens its own
connection (to the hub's current address, looked up again) and gives up after 30 s, as JupyterHub
5's client did. (On a Swarm a restarted hub is still not reached from the workers' tasks:
docs/reliability.md, open.)
"""

from __future__ import annotations

import logging

import aiohttp

log = logging.getLogger("gpuhub")

CONNECTOR = {"force_close": True}  # no kept connection to go stale
SESSION = {"timeout": aiohttp.ClientTimeout(total=30, sock_connect=10)}


async def configure_hub_client() -> None:
    """Make JupyterHub's shared HTTP client (``JupyterHubHTTPClient``) anew with its documented
    options: a connection per request and a time limit. Run on the server's event loop; the
    client JupyterHub's extension made at start (its hub version check) is closed first."""
    try:
        from jupyterhub.httpclient import JupyterHubHTTPClient
    except ImportError:  # JupyterHub before 6: tornado's client, a connection per request
        return
    if JupyterHubHTTPClient.initialized():
        await JupyterHubHTTPClient.instance().close()  # its kept connections with it
    JupyterHubHTTPClient.instance(connector_options=CONNECTOR, session_options=SESSION)
    log.info("gpuhub: requests to the hub open their own connection and time out after 30 s")
