"""A user's server asks the hub through a client that keeps no connection, looks the hub's name up
again for every request, and has a time limit.

JupyterHub 6's single-user server asks the hub (token checks, activity) through one shared aiohttp
session, and it gives that client no configuration. Two of its defaults break when the hub's
container dies and a new one starts (kill -9, the engine restarted, an upgrade):

- it keeps idle connections for reuse: those are dead, and a request sent on one waited for aiohttp's
  five-minute default (a token check on a running server hung);
- it looks names up with aiodns (c-ares, in the user image with aiohttp's speedups), which keeps an
  answer as long as the DNS record's TTL says: Docker's embedded DNS gives 600 s. A hub that comes
  back at another address (on a Swarm's overlay it does, at every start) was not reached for up to
  ten minutes: every token check failed with "Failed to connect to Hub API" (the Swarm tier's
  hub-restart tests), while ``getent hosts hub`` in the same container already gave the new address.

Here every request opens its own connection to the address the system resolver gives now
(aiohttp's threaded resolver: getaddrinfo, no cache of aiohttp's or c-ares's) and gives up after
30 s, as JupyterHub 5's tornado client did.
"""

from __future__ import annotations

import logging

import aiohttp

log = logging.getLogger("gpuhub")

SESSION = {"timeout": aiohttp.ClientTimeout(total=30, sock_connect=10)}


def connector_options() -> dict:
    """No kept connection to go stale, no kept address: the system resolver at every request. Made
    on the server's event loop (the resolver belongs to it)."""
    return {"force_close": True, "use_dns_cache": False, "resolver": aiohttp.ThreadedResolver()}


async def configure_hub_client() -> None:
    """Make JupyterHub's shared HTTP client (``JupyterHubHTTPClient``) anew with its documented
    options: a connection per request, the hub's address looked up each time, a time limit. Run on
    the server's event loop; the client JupyterHub's extension made at start (its hub version
    check) is closed first."""
    try:
        from jupyterhub.httpclient import JupyterHubHTTPClient
    except ImportError:  # JupyterHub before 6: tornado's client, a connection per request
        return
    if JupyterHubHTTPClient.initialized():
        await JupyterHubHTTPClient.instance().close()  # its kept connections with it
    JupyterHubHTTPClient.instance(connector_options=connector_options(), session_options=SESSION)
    log.info("gpuhub: requests to the hub open their own connection to the hub's address of the moment and time out after 30 s")
