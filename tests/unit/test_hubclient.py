"""A user's server asks the hub through a client that keeps no connection (``configure_hub_client``):
a hub container killed and started again leaves no dead connection for the next token check."""

import asyncio

import aiohttp
from aiohttp import web
from jupyterhub.httpclient import JupyterHubHTTPClient, fetch

from gpuhub.singleuser.hubclient import configure_hub_client


def test_the_hub_client_is_made_anew_with_a_connection_per_request_and_a_time_limit():
    async def scenario():
        peers = set()

        async def api(request):
            peers.add(request.transport.get_extra_info("peername")[1])  # the client's port: one per connection
            return web.json_response({"version": "6.1.1"})

        app = web.Application()
        app.router.add_get("/hub/api/", api)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hub/api/"
        try:
            made_by_jupyterhub = JupyterHubHTTPClient.instance()  # as its extension's version check makes it
            await fetch(url)
            await configure_hub_client()
            client = JupyterHubHTTPClient.instance()
            assert client is not made_by_jupyterhub and not made_by_jupyterhub._has_session
            assert client.connector_options == {"force_close": True}
            assert client.session_options["timeout"] == aiohttp.ClientTimeout(total=30, sock_connect=10)
            before = len(peers)
            for _ in range(3):
                await fetch(url)
            assert len(peers) == before + 3  # three requests, three connections: none kept to go stale
        finally:
            await JupyterHubHTTPClient.instance().close()
            await runner.cleanup()

    asyncio.run(scenario())
