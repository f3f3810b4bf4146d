"""Docker-safe, per-user unique names (volumes, containers) from any username.

A username may hold unicode, dots, slashes, 200 characters, or differ from another only by case or
escaping. Docker names allow ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``. The slug keeps a readable part of the
name and always appends a hash of the exact username, so two usernames never share a slug, whatever
the readable parts look like (cf. kubespawner's ``slugs.safe_slug``).
"""

import hashlib
import re

READABLE_MAX = 32
HASH_LENGTH = 16  # 64 bits of sha256: collisions need ~4e9 users


def user_slug(username: str) -> str:
    """``"Alice.Smith"`` → ``"alice-smith-<16 hex>"``; the hash is of the exact, unnormalised username."""
    readable = re.sub(r"[^a-z0-9]+", "-", username.lower()).strip("-")[:READABLE_MAX].strip("-")
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]
    return f"{readable or 'user'}-{digest}"


def render_name(template: str, username: str) -> str:
    """Fill ``{slug}`` in a name template from the settings (``home_volume``, ``container_name``)."""
    return template.replace("{slug}", user_slug(username))
