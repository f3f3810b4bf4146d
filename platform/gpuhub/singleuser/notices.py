"""The user's notices from the hub (``GET /hub/api/gpuhub/v1/notices/USER``: the weekly GPU-hours
running out, or used up), for the status bar. Read with this server's own hub token (it may post
activity for its user, which is what the hub asks), at most every ``refresh`` seconds; a hub that
does not answer means no notice, never an error in the user's JupyterLab."""

from __future__ import annotations

import json
import os
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..contract import notices_path


class HubNotices:
    def __init__(self, environ=None, refresh: float = 30.0):
        env = os.environ if environ is None else environ
        self.api_url = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.user = env.get("JUPYTERHUB_USER", "")
        self.refresh = refresh
        self._notices: list[dict] = []
        self._read_at = float("-inf")

    async def get(self) -> list[dict]:
        if not (self.api_url and self.token and self.user):
            return []  # not under JupyterHub
        if time.monotonic() - self._read_at >= self.refresh:
            self._read_at = time.monotonic()
            try:
                response = await AsyncHTTPClient().fetch(
                    f"{self.api_url}{notices_path(self.user)}",
                    headers={"Authorization": f"token {self.token}"},
                    request_timeout=5,
                )
                self._notices = json.loads(response.body).get("notices", [])
            except (HTTPClientError, OSError, ValueError):
                self._notices = []
        return self._notices
