"""``python -m gpuhub.agent``: run by the hub as the ``gpuhub-agent`` service (see ``gpuhub.hub.hubconfig``).
Reads the settings file named by ``GPUHUB_SETTINGS`` and the service's ``JUPYTERHUB_API_*``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ..config.schema import SETTINGS_ENV, load_settings
from ..config.sections import SettingsError
from ..contract import utcnow
from .activity import source_for
from .core import Agent, log
from .hubapi import HubApi, HubApiError


async def run_forever(agent: Agent, interval: float) -> None:
    while True:
        try:
            await agent.round()
        except HubApiError as e:
            log.warning("gpuhub-agent: a round failed (%s); trying again in %ss", e, interval)
        except Exception:  # one bad round (a restart of the hub, say) must not end the service
            log.exception("gpuhub-agent: a round failed; trying again in %ss", interval)
        await asyncio.sleep(interval)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s gpuhub-agent] %(message)s")
    try:
        settings = load_settings(os.environ[SETTINGS_ENV])
        api = HubApi(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    except (KeyError, SettingsError) as e:
        print(f"gpuhub-agent: cannot start: {e}", file=sys.stderr)
        return 2
    agent = Agent(api, settings, source_for(settings.reclaim.activity, settings.engine.kind, api), utcnow)
    reclaim = settings.reclaim
    log.info(
        "gpuhub-agent: sessions every %ss; GPU readings every %ss (the usage's busy figures); GPU-idle reclaim %s (activity from %s)",
        settings.sessions.check_interval,
        reclaim.check_interval,
        f"after {reclaim.idle_timeout}s (sessions {reclaim.session_idle_timeout or reclaim.idle_timeout}s)" if agent.reclaim.enabled else "off",
        f"the nodes' reporters ({reclaim.activity})" if settings.engine.kind == "swarm" else reclaim.activity,
    )
    try:
        asyncio.run(run_forever(agent, settings.sessions.check_interval))
    except KeyboardInterrupt:  # the hub stops its services with SIGINT: a normal stop
        log.info("gpuhub-agent: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
