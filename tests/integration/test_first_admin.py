"""A fresh deployment is neither open nor locked: the first admin is created once, with a generated
password printed once, and logs in through the real login form (NativeAuthenticator)."""

import re

import pytest

from tests.hubprocess import HubError, HubProcess, login

GENERATED = re.compile(r"created the first admin 'admin' with the generated password (\S+)")


def test_generated_admin_password_is_printed_once_and_works(tmp_path, hub):
    first = HubProcess(tmp_path / "fresh", prefix="gpuhubtest-fresh", admin_password="")
    with first:
        passwords = GENERATED.findall(first.log_path.read_text())
        assert len(passwords) == 1, first.log_tail()
        (password,) = passwords
        assert len(password) >= 16
        assert login(first, "admin", password)[1].status_code == 302
        refused = login(first, "admin", "wrong-password-123")[1]
        assert refused.status_code == 200 and "Invalid username or password" in refused.text  # the form again
        assert "jupyterhub-session-id" not in refused.cookies
    # a restart keeps the account and prints no password
    with first:
        assert len(GENERATED.findall(first.log_path.read_text())) == 1
        assert login(first, "admin", password)[1].status_code == 302


def test_weak_admin_password_stops_the_hub_with_the_reason(tmp_path, hub):
    weak = HubProcess(tmp_path / "weak", prefix="gpuhubtest-weak", admin_password="short")
    with pytest.raises(HubError) as e:
        weak.start(timeout=30)
    weak.stop()
    assert "GPUHUB_ADMIN_PASSWORD must have at least 10 characters" in str(e.value)
