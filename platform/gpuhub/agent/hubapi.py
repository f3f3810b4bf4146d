"""The agent's one seam to the hub: JSON over the REST API with the service's token."""

from __future__ import annotations

import json
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class HubApiError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def q(name: str) -> str:
    return quote(name, safe="")


class HubApi:
    def __init__(self, api_url: str, token: str, timeout: float = 60):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.client = AsyncHTTPClient()

    async def call(self, method: str, path: str, body=None, ok=(200, 201, 202, 204)):
        request = HTTPRequest(
            f"{self.api_url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else (b"" if method in ("POST", "PUT") else None),
            request_timeout=self.timeout,
            allow_nonstandard_methods=True,
        )
        try:
            response = await self.client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise HubApiError(599, f"the hub did not answer {method} {path}: {e}") from None
        if response.code not in ok:
            text = response.body.decode("utf-8", "replace") if response.body else ""
            try:
                text = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                pass
            raise HubApiError(response.code, f"{method} {path}: {text[:300]}")
        return json.loads(response.body) if response.body else None

    async def get(self, path: str):
        return await self.call("GET", path)
