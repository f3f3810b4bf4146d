"""The real jupyterhub process refuses a bad settings file at start, naming the key, the value and
what is accepted, and leaves nothing running."""

import pytest

from tests.hubprocess import HubError, HubProcess


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.replace('pull_policy = "never"', 'pull_policy = "sometimes"'),
         ["spawner.pull_policy = 'sometimes' is not accepted", '"ifnotpresent", "always" or "never"']),
        (lambda t: t.replace('cpu_limit = 0.5', 'cpu_limit = "half"', 1),
         ["profiles[0].cpu_limit = 'half' is not accepted", "a number of CPUs from 0.01 to 1024"]),
        (lambda t: t + "\n[hub]\nport = 1\n", ["not valid TOML"]),
    ],
    ids=["enum", "profile type", "toml"],
)
def test_bad_settings_stop_the_hub(tmp_path, hub, edit, fragments):
    bad = HubProcess(tmp_path / "bad", prefix="gpuhubtest-bad")
    bad.write_config()
    path = bad.workdir / "settings.toml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(HubError) as e:
        bad.start(timeout=30)
    bad.stop()
    assert "the hub does not start: bad settings file" in str(e.value)
    for fragment in fragments:
        assert fragment in str(e.value)
    assert bad.process.returncode != 0
