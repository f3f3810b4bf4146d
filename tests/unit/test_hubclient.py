"""A user's server asks the hub through a client that keeps no connection and keeps no address
(``configure_hub_client``): a hub container killed and started again leaves no dead connection for
the next token check, and a hub that comes back at another address is reached there at once."""

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
            assert client.connector_options["force_close"] and not client.connector_options["use_dns_cache"]
            assert client.session_options["timeout"] == aiohttp.ClientTimeout(total=30, sock_connect=10)
            before = len(peers)
            for _ in range(3):
                await fetch(url)
            assert len(peers) == before + 3  # three requests, three connections: none kept to go stale
        finally:
            await JupyterHubHTTPClient.instance().close()
            await runner.cleanup()

    asyncio.run(scenario())


class MovingNameLoop(asyncio.SelectorEventLoop):
    """An event loop whose name lookups (getaddrinfo: what the system resolver answers) give ``hub``
    the address in ``self.hub``, as Docker's embedded DNS gives the hub container's address of the
    moment; it counts the lookups."""

    hub = "127.0.0.1"
    lookups = 0

    async def getaddrinfo(self, host, *args, **kwargs):
        if host == "hub":
            self.lookups += 1
            host = self.hub
        return await super().getaddrinfo(host, *args, **kwargs)


def test_a_hub_that_comes_back_at_another_address_is_reached_there_at_the_next_request():
    async def scenario(loop: MovingNameLoop):
        answers = []

        async def serve(address: str, port: int = 0):
            async def api(request):
                return web.json_response({"at": address})

            app = web.Application()
            app.router.add_get("/hub/api/", api)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, address, port).start()
            return runner, runner.addresses[0][1]

        first, port = await serve("127.0.0.1")
        second, _ = await serve("127.0.0.2", port)  # the restarted hub: another address, the same port
        try:
            await configure_hub_client()
            answers.append(await (await fetch(f"http://hub:{port}/hub/api/")).json())
            await first.cleanup()  # the old hub container is gone
            loop.hub = "127.0.0.2"
            answers.append(await (await fetch(f"http://hub:{port}/hub/api/")).json())
            assert answers == [{"at": "127.0.0.1"}, {"at": "127.0.0.2"}]
            assert loop.lookups == 2  # looked up for each request, not kept for a TTL
        finally:
            await JupyterHubHTTPClient.instance().close()
            await second.cleanup()

    loop = MovingNameLoop()
    try:
        loop.run_until_complete(scenario(loop))
    finally:
        loop.close()
