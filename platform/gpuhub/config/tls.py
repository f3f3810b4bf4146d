"""The operator's own certificate (``[https] mode = "files"``), checked before the edge is given it:
Python's TLS library loads the pair as a server would, so a wrong path, a file that is not PEM, a
key that does not belong to the certificate, or an encrypted key is refused with the reason."""

from __future__ import annotations

import os
import ssl

from .sections import SettingsError


def check_certificate_pair(certificate: str, key: str) -> None:
    """Raise ``SettingsError`` naming the file and what is wrong unless ``certificate`` and ``key``
    load together as a TLS server's certificate."""
    for name, path in (("certificate", certificate), ("key", key)):
        if not os.path.isfile(path):
            raise SettingsError(f"https.{name} = {path!r}: no such file. Accepted: the path of a PEM file on the Docker host", f"https.{name}")
        if not os.access(path, os.R_OK):
            raise SettingsError(f"https.{name} = {path!r}: not readable by this user", f"https.{name}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certificate, key, password=_no_password)
    except _EncryptedKey:
        raise SettingsError(f"https.key = {key!r}: the key is encrypted. Accepted: an unencrypted PEM private key"
                            " (openssl pkey -in KEY -out KEY.plain)", "https.key") from None
    except ssl.SSLError as e:
        reason = "the key does not belong to the certificate" if "KEY_VALUES_MISMATCH" in str(e) else f"not a PEM certificate and key ({e.reason or e})"
        raise SettingsError(f"https.certificate = {certificate!r} with https.key = {key!r}: {reason}", "https.certificate") from None


class _EncryptedKey(Exception):
    pass


def _no_password():
    raise _EncryptedKey
