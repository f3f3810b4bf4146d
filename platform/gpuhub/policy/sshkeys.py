"""Which public keys a person may register for SSH into their server: one OpenSSH public key line
(``ssh-ed25519 AAAA... alice@laptop``), no ``authorized_keys`` options, a modern algorithm, RSA of at
least ``[ssh] min_rsa_bits``. Parsing is asyncssh's (a maintained SSH implementation: gpuhub never
parses key material itself); the fingerprint is OpenSSH's ``SHA256:...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncssh

ALGORITHMS = (
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
MAX_KEY_TEXT = 16 * 1024  # an RSA-16384 public key line is about 2.8 KiB
MAX_COMMENT = 200
KEY_LINE = re.compile(r"^(\S+) ([A-Za-z0-9+/]+={0,2})(?: (.*))?$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class KeyRefused(ValueError):
    """A key that is not accepted; ``str()`` says why and what is accepted."""


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    data: str  # the key blob, base64, as in the .pub file
    comment: str
    fingerprint: str  # "SHA256:..."

    def line(self) -> str:
        return f"{self.algorithm} {self.data} {self.comment}".rstrip()


ACCEPTED = "one public key line as in ~/.ssh/id_ed25519.pub (ssh-ed25519, ecdsa-sha2-nistp256/384/521, their sk- variants, or ssh-rsa)"


def parse_public_key(text, min_rsa_bits: int = 3072) -> PublicKey:
    """``text`` as a key to register, or ``KeyRefused`` saying why."""
    if not isinstance(text, str):
        raise KeyRefused(f"{type(text).__name__} is not a key. Accepted: {ACCEPTED}")
    if len(text) > MAX_KEY_TEXT:
        raise KeyRefused(f"{len(text)} characters is too long for a public key. Accepted: {ACCEPTED}, at most {MAX_KEY_TEXT} characters")
    line = text.strip()
    if "PRIVATE KEY" in line:
        raise KeyRefused("this is a PRIVATE key: never paste it anywhere (make a new one if you did). Accepted: the .pub file's line")
    if "\n" in line or "\r" in line:
        raise KeyRefused(f"more than one line. Accepted: {ACCEPTED}")
    match = KEY_LINE.match(line)
    if match is None:
        raise KeyRefused(f"not a public key line (authorized_keys options such as command=... are not accepted). Accepted: {ACCEPTED}")
    algorithm, data, comment = match.group(1), match.group(2), (match.group(3) or "").strip()
    if algorithm not in ALGORITHMS:
        raise KeyRefused(f"{algorithm[:40]!r} is not accepted (ssh-dss and unknown types are not). Accepted: {', '.join(ALGORITHMS)}")
    if len(comment) > MAX_COMMENT or CONTROL.search(comment):
        raise KeyRefused(f"the comment after the key is not accepted. Accepted: text of at most {MAX_COMMENT} characters")
    try:
        key = asyncssh.import_public_key(f"{algorithm} {data}")
    except (asyncssh.KeyImportError, ValueError) as e:
        raise KeyRefused(f"the key data is not a valid {algorithm} key ({e}). Accepted: {ACCEPTED}") from None
    if key.get_algorithm() != algorithm:
        raise KeyRefused(f"the key data is a {key.get_algorithm()} key, not {algorithm}. Accepted: {ACCEPTED}")
    if algorithm == "ssh-rsa":
        bits = key.pyca_key.key_size
        if bits < min_rsa_bits:
            raise KeyRefused(
                f"an RSA key of {bits} bits is too short. Accepted: RSA of at least {min_rsa_bits} bits, or an ed25519 key (ssh-keygen -t ed25519)"
            )
    return PublicKey(algorithm, data, comment, key.get_fingerprint("sha256"))
