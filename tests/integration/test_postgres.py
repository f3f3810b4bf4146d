"""The hub on PostgreSQL (Debian's server, on loopback): users and a running server survive a hub restart."""

from tests.hubprocess import HubProcess
from tests.pgserver import PostgresServer


def test_hub_runs_on_postgresql_across_a_restart(tmp_path, hub):
    with PostgresServer() as pg:
        url = pg.create_database("gpuhub")
        h = HubProcess(tmp_path / "hub", prefix="gpuhubtest-pg", db_url=url)
        try:
            with h:
                h.create_user("pat")
                h.start_server("pat", {"profile": "cpu-test"})
                assert len(h.containers()) == 1
            with h:  # a new hub process on the same database finds the running server again
                model = h.api("GET", "/users/pat", expect=200).json()
                assert model["servers"][""]["ready"] is True
                r = h.session.get(f"{h.user_server_url('pat')}api/status", timeout=30)
                assert r.status_code == 200, r.text
                h.stop_server("pat")
        finally:
            h.stop()
            h.remove_docker_objects()
        assert not h.containers() and not h.volumes()
