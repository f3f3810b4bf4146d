"""SSH public keys: which are accepted (a table of real keys made by asyncssh, and of what is refused
with why), and the store on a real SQLite file: one key belongs to one person, a limit per person,
removal only by its owner."""

import asyncssh
import pytest

from gpuhub.db.sshkeys import SshKeyStore
from gpuhub.config.schema import parse_settings
from gpuhub.hub.ssh import Gatekeeper, SshGateway, host_key, split_login
from gpuhub.policy.sshkeys import MAX_KEY_TEXT, KeyRefused, parse_public_key
from tests.conftest import BASE_SETTINGS


def public(algorithm: str, comment: str = "alice@laptop", **kw) -> str:
    return asyncssh.generate_private_key(algorithm, comment=comment, **kw).export_public_key().decode().strip()


ED25519 = public("ssh-ed25519")
RSA_2048 = public("ssh-rsa", key_size=2048)


@pytest.mark.parametrize("algorithm, kw", [("ssh-ed25519", {}), ("ecdsa-sha2-nistp256", {}), ("ecdsa-sha2-nistp521", {}), ("ssh-rsa", {"key_size": 3072})])
def test_a_modern_key_is_accepted_with_its_fingerprint(algorithm, kw):
    text = public(algorithm, **kw)
    key = parse_public_key(text + "\n")
    assert key.algorithm == algorithm and key.comment == "alice@laptop" and key.line() == text
    assert key.fingerprint == asyncssh.import_public_key(text).get_fingerprint("sha256") and key.fingerprint.startswith("SHA256:")


@pytest.mark.parametrize(
    "text, fragment",
    [
        (RSA_2048, "an RSA key of 2048 bits is too short"),
        (asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode(), "PRIVATE key"),
        (f'command="rm -rf ~" {ED25519}', "not a public key line (authorized_keys options"),
        (f"{ED25519}\n{ED25519}", "more than one line"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "'ssh-dss' is not accepted"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD", "not a valid ssh-ed25519 key"),
        (ED25519.replace("ssh-ed25519", "ecdsa-sha2-nistp256", 1), "not a valid ecdsa-sha2-nistp256 key"),
        (ED25519 + " x" * (MAX_KEY_TEXT // 2), "too long for a public key"),
        (ED25519 + " \x1b[31mred", "the comment after the key is not accepted"),
        ("", "not a public key line"),
        (None, "NoneType is not a key"),
        (["ssh-ed25519"], "list is not a key"),
    ],
)
def test_what_is_refused_says_why(text, fragment):
    with pytest.raises(KeyRefused) as e:
        parse_public_key(text)
    assert fragment in str(e.value) and "Accepted" in str(e.value)


def test_the_store_keeps_a_key_with_one_person_up_to_the_limit(db):
    store = SshKeyStore(db)
    key, other = parse_public_key(ED25519), parse_public_key(public("ssh-ed25519"))
    added = store.add("alice", key, 2)
    assert added.username == "alice" and added.key == key
    assert store.add("alice", key, 2) == "registered"
    assert store.add("bob", key, 2) == "taken"  # alice's key never opens bob's account
    assert store.add("alice", other, 2).key == other
    assert store.add("alice", parse_public_key(public("ecdsa-sha2-nistp256")), 2) == "full"
    assert [k.key.fingerprint for k in store.of("alice")] == [key.fingerprint, other.fingerprint] and store.of("bob") == []
    assert store.remove("bob", added.id) is None  # not bob's
    store.used(added.id)
    assert store.of("alice")[0].last_used == db.clock()
    assert store.remove("alice", added.id).key == key and store.add("bob", key, 2).username == "bob"


@pytest.mark.parametrize("login, expected", [("alice", ("alice", "")), ("alice+gpu2", ("alice", "gpu2")), ("root", ("root", "")), ("+x", ("", "x"))])
def test_a_login_names_the_person_and_their_server(login, expected):
    assert split_login(login) == expected


def test_the_host_key_is_kept_in_the_state_dir_private(tmp_path):
    first = host_key(str(tmp_path))
    path = tmp_path / "ssh_host_ed25519_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert host_key(str(tmp_path)).get_fingerprint() == first.get_fingerprint()  # clients' known_hosts stay valid
    assert host_key("").get_fingerprint() != first.get_fingerprint()  # no state dir: a new one each start


class Keys:
    """The key service as the gateway asks it: each person's registered keys."""

    def __init__(self, keys: dict):
        self.keys = keys

    async def of(self, user):
        return self.keys.get(user, [])

    async def used(self, key_id):
        pass


class Connection:
    def __init__(self, username):
        self.extra = {"peername": ("127.0.0.1", 50000), "username": username}

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)


async def test_the_session_is_the_signed_logins_not_the_last_key_offered(db):
    """A client may offer alice's public key for "alice" (a query: no signature needed to learn it is
    accepted), then sign as mallory with mallory's own key: the session must be mallory's."""
    alice_pub, mallory_pub = asyncssh.import_public_key(ED25519), asyncssh.import_public_key(public("ssh-ed25519"))
    store = SshKeyStore(db)
    alice, mallory = store.add("alice", parse_public_key(ED25519), 5), store.add("mallory", parse_public_key(mallory_pub.export_public_key().decode()), 5)
    keeper = Gatekeeper(SshGateway(parse_settings(BASE_SETTINGS), None, Keys({"alice": [alice], "mallory": [mallory]}), None))
    keeper.connection_made(Connection("mallory"))
    assert await keeper.validate_public_key("mallory", mallory_pub)
    assert await keeper.validate_public_key("alice", alice_pub)  # offered last, never signed
    assert not await keeper.validate_public_key("root", alice_pub) and not await keeper.validate_public_key("alice", mallory_pub)
    keeper.auth_completed()
    assert (keeper.user, keeper.server, keeper.key.id) == ("mallory", "", mallory.id)
