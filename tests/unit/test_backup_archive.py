"""The backup archive's checks (gpuhub.backup.archive): an archive is restored only when every member
the manifest names is there, whole and unchanged, and nothing else is."""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timezone

import pytest

from gpuhub.backup import archive as a

WHEN = datetime(2026, 12, 3, 16, 0, tzinfo=timezone.utc)
MEMBERS = {
    a.DATABASE: b"SQLite format 3\x00" + b"x" * 5000,
    "hub/data/jupyterhub_cookie_secret": b"0123abcd\n",
    "site/settings.toml": b"[hub]\n",
    "site/jupyterhub_config.d/poll.py": b"c.Spawner.poll_interval = 5\n",
    "volumes/gpuhub-home-ana-1a2b.tar": b"\x00" * 10240,
}


def make(path, members=MEMBERS, manifest_edit=None, extra=None, with_manifest=True):
    manifest = a.Manifest(WHEN.isoformat(), "0.1.0", "6.1.1", "sqlite", 2, volumes={"gpuhub-home-ana-1a2b": {"role": "home", "labels": {}}})
    with tarfile.open(path, "w:") as tar:
        for name, data in members.items():
            a.add_member(tar, manifest, name, io.BytesIO(data), len(data), WHEN.timestamp())
        for name, data in (extra or {}).items():  # written around the manifest's bookkeeping
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if manifest_edit:
            manifest_edit(manifest)
        if with_manifest:
            a.add_manifest(tar, manifest)
    return manifest


def test_an_archive_made_here_verifies_with_every_member(tmp_path):
    made = make(tmp_path / "b.tar")
    got = a.verify(str(tmp_path / "b.tar"))
    assert got == made
    assert set(got.members) == set(MEMBERS)
    assert got.members["site/settings.toml"]["size"] == 6
    assert a.archive_name(WHEN) == "gpuhub-backup-20261203T160000Z.tar"


def flip_byte_of(path, member):
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        offset = tar.getmember(member).offset_data
    data[offset + 3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: flip_byte_of(p, "volumes/gpuhub-home-ana-1a2b.tar"), "volumes/gpuhub-home-ana-1a2b.tar does not match its checksum"),
        (lambda p: flip_byte_of(p, a.DATABASE), "hub/jupyterhub.sqlite does not match its checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:7000]), "cut short"),
        (lambda p: p.write_bytes(b"not a tar at all" * 100), "not a readable tar archive"),
    ],
    ids=["a-home-changed", "the-database-changed", "cut-short", "not-tar"],
)
def test_a_damaged_archive_is_refused_naming_what(tmp_path, damage, message):
    path = tmp_path / "b.tar"
    make(path)
    damage(path)
    with pytest.raises(a.BackupError, match=message):
        a.verify(str(path))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"with_manifest": False}, "has no manifest.json"),
        ({"manifest_edit": lambda m: m.members.update({"site/settings.toml": {"size": 6, "sha256": "0" * 64}})}, "site/settings.toml does not match"),
        ({"manifest_edit": lambda m: m.members.update({"hub/data/extra": {"size": 1, "sha256": "0" * 64}})}, "hub/data/extra is missing"),
        ({"extra": {"hub/data/unlisted": b"x"}}, "hub/data/unlisted is not in the manifest"),
        ({"extra": {"../../etc/passwd": b"x"}}, "'../../etc/passwd', which no gpuhub backup holds"),
        ({"members": {k: v for k, v in MEMBERS.items() if k != a.DATABASE}}, "has no hub/jupyterhub.sqlite"),
        ({"manifest_edit": lambda m: setattr(m, "format", 99)}, "format 99; this gpuhub reads format 1"),
    ],
    ids=["no-manifest", "wrong-checksum", "listed-not-there", "there-not-listed", "path-outside", "no-database", "newer-format"],
)
def test_an_archive_that_is_not_what_its_manifest_says_is_refused(tmp_path, kwargs, message):
    path = tmp_path / "b.tar"
    make(path, **kwargs)
    with pytest.raises(a.BackupError, match=message):
        a.verify(str(path))


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "hub/data/a/b", "volumes/x", "site/other.toml", "hub/jupyterhub.sqlite.bak"])
def test_only_the_archives_own_names_are_written(name):
    manifest = a.Manifest(WHEN.isoformat(), "0.1.0", "6.1.1", "sqlite", 0)
    with tarfile.open(fileobj=io.BytesIO(), mode="w:") as tar, pytest.raises(a.BackupError, match="is not a name a gpuhub backup holds"):
        a.add_member(tar, manifest, name, io.BytesIO(b"x"), 1, 0)


def test_a_file_that_shrinks_while_copied_fails_the_backup():
    manifest = a.Manifest(WHEN.isoformat(), "0.1.0", "6.1.1", "sqlite", 0)
    with tarfile.open(fileobj=io.BytesIO(), mode="w:") as tar, pytest.raises(a.BackupError, match="changed while it was copied"):
        a.add_member(tar, manifest, a.DATABASE, io.BytesIO(b"short"), 10, 0)


# --- the service's parts that need no engine (gpuhub.backup.service)
def test_only_a_sqlite_hub_is_backed_up_by_the_command():
    from gpuhub.backup.service import sqlite_path

    assert str(sqlite_path("sqlite:////srv/gpuhub/data/jupyterhub.sqlite")) == "/srv/gpuhub/data/jupyterhub.sqlite"
    with pytest.raises(a.BackupError, match="not SQLite.*pg_dump"):
        sqlite_path("postgresql://gpuhub:pw@postgres:5432/gpuhub")


def test_the_database_copy_is_whole_while_the_hub_holds_a_write_open(tmp_path):
    """SQLite's online backup while another connection has an uncommitted write: the copy holds what
    was committed, and names the users and sessions whose volumes the backup takes."""
    import sqlite3

    from gpuhub.backup.service import database_snapshot

    source = tmp_path / "jupyterhub.sqlite"
    hub = sqlite3.connect(source)
    hub.execute("PRAGMA journal_mode=WAL")
    hub.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    hub.execute("CREATE TABLE gpuhub_sessions (id INTEGER PRIMARY KEY, name TEXT)")
    hub.executemany("INSERT INTO users (name) VALUES (?)", [("bob",), ("ana",)])
    hub.execute("INSERT INTO gpuhub_sessions (name) VALUES ('ml101')")
    hub.commit()
    hub.execute("INSERT INTO users (name) VALUES ('uncommitted')")  # a write in flight
    users, sessions = database_snapshot(source, tmp_path / "copy.sqlite")
    assert (users, sessions) == (["ana", "bob"], ["ml101"])
    hub.rollback()
    hub.close()
    with pytest.raises(a.BackupError, match="does not exist"):
        database_snapshot(tmp_path / "missing.sqlite", tmp_path / "copy2.sqlite")


def test_the_site_files_are_the_settings_and_the_python_drop_ins(tmp_path):
    from gpuhub.backup.service import site_files

    (tmp_path / "settings.toml").write_text("[hub]\n")
    (tmp_path / "jupyterhub_config.d").mkdir()
    for name in ("50-site.py", "README.md", "10-auth.py"):
        (tmp_path / "jupyterhub_config.d" / name).write_text("#")
    assert [name for name, _ in site_files(tmp_path)] == [
        "settings.toml", "jupyterhub_config.d/10-auth.py", "jupyterhub_config.d/50-site.py"]
