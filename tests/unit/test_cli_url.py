"""Where the CLI finds the hub: ``$GPUHUB_URL``; in a user's server the hub as the server reaches it
(with [network] isolation the site's public name may be the host's own address, which servers may not
reach); else the local default."""

import pytest

from gpuhub.cli import hub_url


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"GPUHUB_URL": "https://gpu.example.edu", "JUPYTERHUB_API_URL": "http://hub:8081/hub/api"}, "https://gpu.example.edu"),
        ({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api"}, "http://hub:8081"),
        ({"JUPYTERHUB_API_URL": "http://172.17.0.1:41234/hub/api/"}, "http://172.17.0.1:41234"),
        ({"JUPYTERHUB_API_URL": "http://hub:8081/elsewhere"}, "http://127.0.0.1:8000"),
        ({}, "http://127.0.0.1:8000"),
    ],
)
def test_the_hubs_url(environ, expected):
    assert hub_url(environ) == expected
