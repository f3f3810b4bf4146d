"""The settings file becomes JupyterHub config (tested with traitlets' Config, as TLJH does)."""

import os

import pytest
from traitlets.config import Config

from gpuhub.hub.auth import GPUHubAuthenticator, GPUHubPages
from gpuhub.hub.hubconfig import apply_site_settings, config_d_files, serve_gpuhub_pages, settings_path
from tests.conftest import BASE_SETTINGS


def test_repository_settings_become_hub_config(repo_root):
    c = Config()
    settings = apply_site_settings(c, str(repo_root / "settings.toml"))
    assert c.JupyterHub.spawner_class == "gpuhub"
    assert c.JupyterHub.authenticator_class == "gpuhub-native"
    assert c.JupyterHub.db_url == "sqlite:////srv/gpuhub/data/jupyterhub.sqlite"
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.JupyterHub.cookie_secret_file == "/srv/gpuhub/data/jupyterhub_cookie_secret"
    assert c.Authenticator.admin_users == {"admin"}
    assert c.GPUHubAuthenticator.first_admin == "admin"
    assert c.JupyterHub.cleanup_servers is False
    assert c.GPUSpawner.site_settings is settings
    assert c.DockerSpawner.allowed_images == ["gpuhub/pytorch-cuda:cpu", "gpuhub/pytorch-cuda:2.7-cuda12.6"]
    assert c.DockerSpawner.network_name == "gpuhub"
    assert c.DockerSpawner.remove is True
    assert c.DockerSpawner.pull_policy == "never"
    assert c.Spawner.default_url == "/lab"


def test_other_authenticator_is_passed_through(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[hub]\nauthenticator = "github"\nadmin_users = ["zoe", "adam"]\n' + BASE_SETTINGS)
    c = Config()
    settings = apply_site_settings(c, str(path))
    assert c.JupyterHub.authenticator_class == "github"
    assert c.GPUHubAuthenticator.first_admin == "zoe"  # the listed order, not the alphabetical one
    assert "hub_connect_url" not in c.JupyterHub
    serve_gpuhub_pages(c, settings)  # the site's authenticator, with gpuhub's pages
    assert c.JupyterHub.authenticator_class.__name__ == "GPUHubGitHubOAuthenticator"
    assert issubclass(c.JupyterHub.authenticator_class, GPUHubPages)


def test_bad_settings_stop_the_hub_with_the_reason(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[hub]\ndb_url = "oracle://x"\n' + BASE_SETTINGS)
    with pytest.raises(SystemExit) as e:
        apply_site_settings(Config(), str(path))
    assert "the hub does not start" in str(e.value.code)
    assert "hub.db_url = 'oracle://x'" in str(e.value.code)


def test_paths_from_environment(tmp_path, monkeypatch):
    (tmp_path / "b.py").write_text("")
    (tmp_path / "a.py").write_text("")
    (tmp_path / "notes.md").write_text("")
    monkeypatch.setenv("GPUHUB_CONFIG_D", str(tmp_path))
    monkeypatch.setenv("GPUHUB_SETTINGS", "/etc/gpuhub/site.toml")
    assert [p.rsplit("/", 1)[1] for p in config_d_files("/srv")] == ["a.py", "b.py"]
    assert settings_path("/srv") == "/etc/gpuhub/site.toml"
    monkeypatch.delenv("GPUHUB_SETTINGS")
    assert settings_path("/srv") == "/srv/settings.toml"


@pytest.mark.parametrize(
    "hub_table, admins, viewers",
    [
        ('admin_users = ["zoe", "adam"]', ["zoe", "adam"], []),  # default: the hub's admins
        ('admin_users = ["zoe"]\ngpu_admins = ["ops"]\ngpu_viewers = ["finance"]', ["ops"], ["finance"]),
        ('admin_users = ["zoe"]\ngpu_admins = []', [], []),  # nobody: the admin pages are off for all
    ],
)
def test_the_admin_pages_roles_scopes_and_routes(tmp_path, hub_table, admins, viewers):
    path = tmp_path / "s.toml"
    path.write_text(f"[hub]\n{hub_table}\n" + BASE_SETTINGS)
    c = Config()
    settings = apply_site_settings(c, str(path))
    assert set(c.JupyterHub.custom_scopes) == {
        "custom:gpuhub:read", "custom:gpuhub:sessions", "custom:gpuhub:admin", "custom:gpuhub:report-nodes"
    }
    # the node reporters' scope is theirs alone: no admin role includes it
    assert "custom:gpuhub:report-nodes" not in c.JupyterHub.custom_scopes["custom:gpuhub:admin"]["subscopes"]
    assert c.JupyterHub.custom_scopes["custom:gpuhub:admin"]["subscopes"] == ["custom:gpuhub:read", "custom:gpuhub:sessions"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["gpuhub-admin"]["users"] == admins and "custom:gpuhub:admin" in roles["gpuhub-admin"]["scopes"]
    assert roles["gpuhub-viewer"]["users"] == viewers and roles["gpuhub-viewer"]["scopes"] == ["custom:gpuhub:read"]
    serve_gpuhub_pages(c, settings)
    assert c.JupyterHub.authenticator_class is GPUHubAuthenticator and "extra_handlers" not in c.JupyterHub
    routes = [h[0] for h in c.GPUHubPages.gpuhub_handlers]
    assert "/api/gpuhub/v1/quotas" in routes and "/gpuhub/admin" in routes
    assert "/api/gpuhub/v1/sessions" in routes and "/gpuhub/sessions" in routes
    assert c.JupyterHub.template_paths[0].endswith("gpuhub/templates")


@pytest.mark.parametrize(
    "tables, culler_command",
    [
        ("", ["--timeout=3600", "--cull-every=300", "--concurrency=5"]),  # the defaults: culling on, 1 h
        ("[culling]\ntimeout = 600\nevery = 60\nmax_age = 86400\n", ["--timeout=600", "--cull-every=60", "--concurrency=5", "--max-age=86400"]),
        ("[culling]\ntimeout = 0\n", None),  # off: no culler service, its role has no member
    ],
)
def test_services_instructors_and_their_scopes(tmp_path, tables, culler_command):
    path = tmp_path / "s.toml"
    path.write_text('[hub]\ninstructors = ["prof"]\n' + BASE_SETTINGS + "\n" + tables)
    c = Config()
    apply_site_settings(c, str(path))
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["gpuhub-agent"]["command"][1:] == ["-m", "gpuhub.agent"]
    assert services["gpuhub-agent"]["environment"]["GPUHUB_SETTINGS"] == str(path)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["gpuhub-instructor"] == {
        "name": "gpuhub-instructor",
        "description": roles["gpuhub-instructor"]["description"],
        "scopes": ["custom:gpuhub:sessions"],
        "users": ["prof"],
    }
    # the agent starts and stops servers and reads activity; it is no JupyterHub admin
    assert set(roles["gpuhub-agent"]["scopes"]) == {"custom:gpuhub:admin", "list:users", "read:users", "read:servers", "servers"}
    assert roles["gpuhub-agent"]["services"] == ["gpuhub-agent"]
    if culler_command is None:
        assert "idle-culler" not in services and roles["idle-culler"]["services"] == []
    else:
        assert services["idle-culler"]["command"][1:3] == ["-m", "jupyterhub_idle_culler"]
        assert services["idle-culler"]["command"][3:] == culler_command
        assert roles["idle-culler"]["services"] == ["idle-culler"]
        assert set(roles["idle-culler"]["scopes"]) == {"list:users", "read:users:activity", "read:servers", "delete:servers"}
    assert c.JupyterHub.concurrent_spawn_limit == 0  # gpuhub's [admission] line bounds starts instead


def test_a_stale_proxy_pid_file_is_forgotten_and_a_live_proxys_kept(tmp_path):
    """A hub container killed and started again keeps its state dir: the pid in the proxy's pid file
    then names another process, and JupyterHub would wait for it as if it were the proxy."""
    import subprocess

    from gpuhub.hub.hubconfig import forget_stale_proxy_pid

    pid_file = tmp_path / "jupyterhub-proxy.pid"
    for content in (str(os.getpid()), "not a pid", "999999999"):
        pid_file.write_text(content)
        forget_stale_proxy_pid(str(pid_file))
        assert not pid_file.exists(), content
    proxy = subprocess.Popen(["bash", "-c", "exec -a configurable-http-proxy sleep 30"])
    try:
        import time

        for _ in range(50):  # until the exec happened
            if b"configurable-http-proxy" in open(f"/proc/{proxy.pid}/cmdline", "rb").read():
                break
            time.sleep(0.05)
        pid_file.write_text(str(proxy.pid))
        forget_stale_proxy_pid(str(pid_file))
        assert pid_file.exists()
    finally:
        proxy.kill()
        proxy.wait()
    forget_stale_proxy_pid(str(tmp_path / "never-written.pid"))  # nothing to forget: no error
