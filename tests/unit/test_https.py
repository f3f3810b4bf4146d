"""``[https]``: the table's rules, the edge's Caddyfile written from it, and the operator's certificate
checked before the edge is given it (real PEM files made here; Caddy itself runs in the e2e tier)."""

import datetime
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gpuhub.config.caddyfile import caddyfile
from gpuhub.config.schema import parse_settings
from gpuhub.config.sections import SettingsError
from gpuhub.config.tls import check_certificate_pair
from tests.conftest import BASE_SETTINGS


def https_of(table: str):
    return parse_settings(BASE_SETTINGS + "\n[https]\n" + table).https


@pytest.mark.parametrize(
    "table, key, message",
    [
        ('mode = "acme"', "https.domain", 'mode = "acme" needs the site\'s DNS name'),
        ('mode = "files"\ncertificate = "/etc/ssl/c.pem"', "https.key", 'mode = "files" needs the certificate and its key'),
        ('mode = "local"\ncertificate = "/etc/ssl/c.pem"', "https.certificate", "does not use it"),
        ('mode = "tls"', "https.mode", 'Accepted: "local", "acme", "files" or "off"'),
        ('domain = "gpu example"', "https.domain", "not a DNS name"),
        ('domain = "10.0.0.5"', "https.domain", "an IP address goes in names"),
        ('names = ["ok.example", "bad name"]', "https.names", "not a DNS name or an IP address"),
        ('email = "ops"', "https.email", "not an e-mail address"),
        ('mode = "files"\ncertificate = "c.pem"\nkey = "/k.pem"', "https.certificate", "not an absolute path"),
        ('acme_ca = "http://ca.example/dir"', "https.acme_ca", "not an https:// URL"),
        ("hsts_max_age = -1", "https.hsts_max_age", "outside 0 to 63072000"),
    ],
)
def test_bad_https_settings_are_refused_naming_the_key(table, key, message):
    with pytest.raises(SettingsError) as e:
        https_of(table)
    assert e.value.key == key and message in str(e.value)


def test_the_default_is_https_from_a_local_ca_for_localhost_and_the_given_names():
    https = parse_settings(BASE_SETTINGS).https
    assert https.mode == "local"
    text = caddyfile(https, ("10.0.0.5",))
    assert "https://localhost, https://127.0.0.1, https://10.0.0.5 {\n\ttls internal\n" in text
    assert "\tskip_install_trust\n\tdefault_sni 10.0.0.5\n" in text  # IP clients send no server name
    assert "default_sni 127.0.0.1" in caddyfile(https)
    assert "\treverse_proxy hub:8000\n" in text
    # plain HTTP answers with a redirect to the published HTTPS port (the container's environment)
    assert "http:// {\n\tredir https://{host}:{$GPUHUB_HTTPS_PORT}{uri} 308\n}" in text
    assert "@hsts not host localhost" in text and 'Strict-Transport-Security "max-age=31536000"' in text


@pytest.mark.parametrize(
    "table, present, absent",
    [
        ('mode = "acme"\ndomain = "gpu.example.edu"\nemail = "ops@example.edu"',
         ["https://gpu.example.edu {", "\temail ops@example.edu\n"], ["tls internal", "tls /", "acme_ca"]),
        ('mode = "acme"\ndomain = "gpu.example.edu"\nacme_ca = "https://acme-staging-v02.api.letsencrypt.org/directory"',
         ["\tacme_ca https://acme-staging-v02.api.letsencrypt.org/directory\n"], ["email"]),
        ('mode = "files"\ndomain = "gpu.example.edu"\ncertificate = "/c.pem"\nkey = "/k.pem"',
         ["https:// {\n\ttls /srv/edge/tls/cert.pem /srv/edge/tls/key.pem", "default_sni gpu.example.edu"], ["tls internal"]),
        ('domain = "gpu.lab"\nnames = ["gpu-lab"]',
         ["https://gpu.lab, https://localhost, https://127.0.0.1, https://gpu-lab {", "default_sni 127.0.0.1"], []),
        ("hsts_max_age = 0", ["reverse_proxy hub:8000"], ["Strict-Transport-Security"]),
        ('mode = "off"', ["auto_https off", "http:// {\n\treverse_proxy hub:8000\n}"], ["https://", "redir", "tls"]),
    ],
)
def test_each_mode_becomes_its_caddyfile(table, present, absent):
    text = caddyfile(https_of(table))
    for part in present:
        assert part in text, (part, text)
    for part in absent:
        assert part not in text, (part, text)
    assert text.count("{") == text.count("}")


def make_pair(folder, name="gpu.example.edu", encrypted=False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False).sign(key, hashes.SHA256()))
    crypt = serialization.BestAvailableEncryption(b"secret") if encrypted else serialization.NoEncryption()
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt))
    return str(cert_path), str(key_path)


def test_a_certificate_with_its_own_key_is_accepted(tmp_path):
    check_certificate_pair(*make_pair(tmp_path))


def test_bad_certificate_files_are_refused_with_the_reason(tmp_path):
    cert, key = make_pair(tmp_path)
    other_cert, other_key = make_pair(tmp_path, "other.example.edu")
    _, encrypted_key = make_pair(tmp_path, "locked.example.edu", encrypted=True)
    (tmp_path / "notes.txt").write_text("not a certificate")
    cases = [
        ((str(tmp_path / "missing.pem"), key), "https.certificate", "no such file"),
        ((cert, str(tmp_path / "missing.key")), "https.key", "no such file"),
        ((cert, other_key), "https.certificate", "the key does not belong to the certificate"),
        ((str(tmp_path / "notes.txt"), key), "https.certificate", "not a PEM certificate and key"),
        ((cert, encrypted_key), "https.key", "the key is encrypted"),
    ]
    for (c, k), field, message in cases:
        with pytest.raises(SettingsError) as e:
            check_certificate_pair(c, k)
        assert e.value.key == field and message in str(e.value), (c, k, str(e.value))
    assert other_cert  # (its own key is used above, with the wrong certificate)


def test_the_settings_command_scripts_up_runs(tmp_path, repo_root):
    """``gpuhub-settings caddyfile|https|tls-check``: what scripts/up runs in the hub image."""
    settings = tmp_path / "s.toml"
    settings.write_text(BASE_SETTINGS + '\n[https]\nmode = "acme"\ndomain = "gpu.example.edu"\n')
    env = {**os.environ, "PYTHONPATH": str(repo_root / "platform")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "gpuhub.config.check", *args], capture_output=True, text=True, env=env)

    made = run("caddyfile", str(settings), "10.0.0.5")
    assert made.returncode == 0 and made.stdout == caddyfile(https_of('mode = "acme"\ndomain = "gpu.example.edu"'), ("10.0.0.5",))
    shown = run("https", str(settings))
    assert shown.returncode == 0 and "https_mode=acme\nhttps_domain=gpu.example.edu\nhttps_certificate=''\n" in shown.stdout
    refused = run("caddyfile", str(settings), "not a name")
    assert refused.returncode == 2 and "caddyfile NAME: not a DNS name or an IP address" in refused.stderr
    cert, key = make_pair(tmp_path)
    assert run("tls-check", cert, key).returncode == 0
    mismatch = run("tls-check", cert, make_pair(tmp_path, "x.example")[1])
    assert mismatch.returncode == 2 and "does not belong" in mismatch.stderr
