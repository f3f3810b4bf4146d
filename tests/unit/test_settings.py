"""The settings file: a good file loads; each kind of bad file is refused with a message naming the
key, the value and what is accepted."""

import pytest

from gpuhub.config.check import main
from gpuhub.config.schema import SettingsError, load_settings, parse_settings
from tests.conftest import BASE_SETTINGS


def test_repository_settings_file_is_valid(repo_root):
    settings = load_settings(str(repo_root / "settings.toml"))
    assert [p.name for p in settings.profiles] == ["cpu-small", "cpu-large", "gpu-1", "gpu-shared"]
    assert settings.profile("cpu-small").mem_limit == 4 * 1024**3
    assert settings.profile("gpu-1").wants_gpu
    assert (settings.gpus.inventory, settings.gpus.exposure) == ("auto", "device_requests")


def test_example_inventory_file_is_valid_and_simulated(repo_root):
    from gpuhub.inventory.file import read_inventory_file

    inventory = read_inventory_file(str(repo_root / "inventory.example.toml"))
    assert inventory.simulated and len(inventory.gpus) == 3 and len(inventory.slices()) == 2


def test_base_settings_parse_with_defaults():
    s = parse_settings(BASE_SETTINGS)
    assert s.hub.authenticator == "native"
    assert s.hub.db_url.startswith("sqlite:///")
    assert s.spawner.uid == 1000
    p = s.profile("cpu-data")
    assert (p.mem_limit, p.cpu_limit, p.shm_size) == (8 * 1024**3, 2.5, 2 * 1024**3)
    assert s.dataset("imagenet").target == "/datasets/imagenet"


def test_postgresql_url_accepted():
    s = parse_settings('[hub]\ndb_url = "postgresql://gpuhub:pw@db:5432/gpuhub"\n' + BASE_SETTINGS)
    assert s.hub.db_url.startswith("postgresql://")


BAD_FILES = [
    # (what, extra TOML placed before the base, or a replacement, expected fragments of the message)
    ("not toml", "this is = = not toml", ["not valid TOML"]),
    ("unknown table", "[hubb]\nx = 1", ["hubb: unknown key", "Accepted keys in the file: accounting, admission, borrowing, culling, datasets, engine, fairness, gpus, https, hub, jobs, ldap, network, oidc, profiles, quotas, reclaim, sessions, spawner, ssh"]),
    ("unknown key", "[hub]\nport = 8000", ["hub.port: unknown key", "bind_url"]),
    ("db url", '[hub]\ndb_url = "mysql://x"', ["hub.db_url = 'mysql://x'", "Accepted: a sqlite:/// or postgresql:// URL"]),
    ("dummy auth", '[hub]\nauthenticator = "dummy"', ["hub.authenticator = 'dummy'", "tests only"]),
    ("relative state dir", '[hub]\nstate_dir = "data"', ["hub.state_dir", "absolute path"]),
    ("bind url", '[hub]\nbind_url = "ftp://x"', ["hub.bind_url = 'ftp://x'", "http"]),
    ("host network", '[spawner]\nnetwork = "host"\nallowed_images = ["gpuhub/pytorch-cuda:cpu"]', ["spawner.network = 'host'", 'other than "host"']),
    ("root uid", '[spawner]\nuid = 0\nallowed_images = ["gpuhub/pytorch-cuda:cpu"]', ["spawner.uid = 0", "1 to 65534"]),
    ("volume template", '[spawner]\nhome_volume = "home"\nallowed_images = ["gpuhub/pytorch-cuda:cpu"]', ["spawner.home_volume = 'home'", "{slug}"]),
    ("pull policy", '[spawner]\npull_policy = "sometimes"\nallowed_images = ["gpuhub/pytorch-cuda:cpu"]', ["spawner.pull_policy = 'sometimes'", '"never"']),
]


@pytest.mark.parametrize("what, text, fragments", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_hub_or_spawner_table_is_refused(what, text, fragments):
    # A [spawner] table in `text` replaces the base one.
    base = BASE_SETTINGS
    if "[spawner]" in text:
        base = base.replace('[spawner]\nallowed_images = ["gpuhub/pytorch-cuda:cpu", "example/other:1"]\n', "")
        base = base.replace('"example/other:1"', '"gpuhub/pytorch-cuda:cpu"')
    with pytest.raises(SettingsError) as e:
        parse_settings(text + "\n" + base, "site.toml")
    message = str(e.value)
    assert message.startswith("site.toml: ")
    for fragment in fragments:
        assert fragment in message, message


PROFILE_ERRORS = [
    ('cpu_limit = "lots"', ["profiles[0].cpu_limit = 'lots'", "expected a float", "a number of CPUs"]),
    ("cpu_limit = 0", ["profiles[0].cpu_limit = 0", "0.01 to 1024"]),
    ('mem_limit = "4 giga"', ["profiles[0].mem_limit = '4 giga'", "e.g. \"4G\""]),
    ('mem_limit = "1M"', ["profiles[0].mem_limit = '1M'", "at least 128M"]),
    ('shm_size = "1M"', ["profiles[0].shm_size = '1M'", "at least 64M"]),
    ('shm_size = "64G"', ["shm_size", "larger than mem_limit"]),
    ('name = "Big Profile"', ["profiles[0].name = 'Big Profile'", "lowercase letters"]),
    ('image = "evil/miner:latest"', ["image = 'evil/miner:latest'", "not in spawner.allowed_images", "gpuhub/pytorch-cuda:cpu"]),
    ("gpus = -1", ["profiles[0].gpus = -1", "0 to 64"]),
    ("gpus = 2", ['gpus = 2 with gpu_mode = \'none\'', "Accepted"]),
    ('gpu_mode = "shared"\ngpus = 1', ["gpu_memory: required", "shared"]),
    ('gpu_mode = "sliced"', ["gpu_mode = 'sliced'", '"mig"']),
    ('datasets = ["nope"]', ["datasets: 'nope' is not a [[datasets]] name", "imagenet"]),
    ("groups = 3", ["profiles[0].groups = 3", "a list of group names"]),
    ("colour = 'red'", ["profiles[0].colour: unknown key", "cpu_limit"]),
    ('gpu_mode = "mig"\ngpus = 2', ["gpus = 2 is not accepted with gpu_mode = 'mig'", "Accepted: 1"]),
    ('mig_profile = "huge"', ["profiles[0].mig_profile = 'huge'", 'a MIG profile such as "1g.10gb"']),
    ('mig_profile = "1g.10gb"', ['mig_profile: only used with gpu_mode = "mig"']),
]


@pytest.mark.parametrize("line, fragments", PROFILE_ERRORS, ids=[p[0] for p in PROFILE_ERRORS])
def test_bad_profile_is_refused(line, fragments):
    # Insert the line into the first profile (a later assignment of the same key would be a TOML error,
    # so the first profile's own key is removed when the line sets it).
    key = line.split("=")[0].strip()
    lines = BASE_SETTINGS.split("\n")
    start = lines.index('name = "cpu-small"')
    block = [ln for ln in lines[start : start + 5] if not ln.startswith(key + " ")]
    text = "\n".join(lines[:start] + block + [line] + lines[start + 5 :])
    with pytest.raises(SettingsError) as e:
        parse_settings(text)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


CROSS_ERRORS = [
    ("no profiles", BASE_SETTINGS.split("[[profiles]]")[0], "at least one profile"),
    ("duplicate names", BASE_SETTINGS + '\n[[profiles]]\nname = "cpu-small"\nimage = "gpuhub/pytorch-cuda:cpu"\n', "used by two profiles"),
    ("two defaults", BASE_SETTINGS.replace('name = "cpu-small"', 'name = "cpu-small"\ndefault = true'), "more than one profile sets default"),
    ("docker socket dataset", BASE_SETTINGS.replace('source = "imagenet-vol"', 'source = "/var/run/docker.sock"'), "Docker socket"),
    ("host root dataset", BASE_SETTINGS.replace('source = "imagenet-vol"', 'source = "/"'), "host root"),
    ("relative target", BASE_SETTINGS.replace('target = "/datasets/imagenet"', 'target = "datasets"'), "datasets[0].target"),
    ("profiles not a list", '[profiles]\nname = "x"\n', "expected a list of tables"),
    ("inventory source", BASE_SETTINGS + '[gpus]\ninventory = "smi"\n', "gpus.inventory = 'smi' is not accepted"),
    ("relative inventory file", BASE_SETTINGS + '[gpus]\ninventory = "file:inv.toml"\n', "gpus.inventory = 'file:inv.toml'"),
    ("exposure", BASE_SETTINGS + '[gpus]\nexposure = "count"\n', '"device_requests" or "env-only"'),
    ("max shares", BASE_SETTINGS + "[gpus]\nmax_shares_per_gpu = 0\n", "gpus.max_shares_per_gpu = 0 is not accepted: outside 1 to 64"),
    ("queue timeout", BASE_SETTINGS + '[gpus]\nqueue_timeout = "soon"\n', "gpus.queue_timeout = 'soon'"),
    ("negative quota", BASE_SETTINGS + "[[quotas]]\nmax_gpus = -1\n", "quotas[0].max_gpus = -1 is not accepted: outside 0 to 1024"),
    ("quota user and group", BASE_SETTINGS + '[[quotas]]\nuser = "a"\ngroup = "b"\n', "quotas[0]: sets both user and group"),
    ("quota twice", BASE_SETTINGS + '[[quotas]]\ngroup = "b"\n[[quotas]]\ngroup = "b"\n', "a second [[quotas]] block for group 'b'"),
    ("quota profile", BASE_SETTINGS + '[[quotas]]\nprofiles = ["gpu-9"]\n', "quotas[0].profiles: 'gpu-9' is not a profile name"),
    ("quota key", BASE_SETTINGS + "[[quotas]]\nmax_gpu_hours = 3\n", "quotas[0].max_gpu_hours: unknown key"),
]


@pytest.mark.parametrize("what, text, fragment", CROSS_ERRORS, ids=[c[0] for c in CROSS_ERRORS])
def test_rules_across_tables(what, text, fragment):
    with pytest.raises(SettingsError) as e:
        parse_settings(text)
    assert fragment in str(e.value), str(e.value)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(SettingsError) as e:
        load_settings(str(tmp_path / "nope.toml"))
    assert "GPUHUB_SETTINGS" in str(e.value)


def test_check_command(tmp_path, capsys, repo_root):
    assert main(["check", str(repo_root / "settings.toml")]) == 0
    assert "ok (4 profiles" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[hub]\ndb_url = "oracle://"\n' + BASE_SETTINGS)
    assert main(["check", str(bad)]) == 2
    assert "hub.db_url = 'oracle://'" in capsys.readouterr().err
    assert main([]) == 2


def test_check_command_reads_standard_input(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(BASE_SETTINGS))
    assert main(["check", "-"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(BASE_SETTINGS.replace("cpu_limit = 1\n", 'cpu_limit = "one"\n')))
    assert main(["check", "-"]) == 2
    assert "settings (stdin): profiles[0].cpu_limit = 'one'" in capsys.readouterr().err
