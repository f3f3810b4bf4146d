"""``gpuhub-settings check FILE``: validate a settings file without starting the hub."""

from __future__ import annotations

import sys

from .schema import load_settings, parse_settings
from .sections import SettingsError


def main(argv=None) -> int:
    """``gpuhub-settings check FILE`` (``-``: standard input): validate a settings file, exit 0 if good,
    2 with the reason if not. ``docker-compose exec -T hub gpuhub-settings check - < settings.toml``
    checks the file as edited on the host with the hub's own code (a single-file bind mount can
    show the container an older copy until the hub restarts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "check":
        print("usage: gpuhub-settings check SETTINGS.toml   (or - to read standard input)", file=sys.stderr)
        return 2
    label = "settings (stdin)" if args[1] == "-" else args[1]
    try:
        settings = parse_settings(sys.stdin.read(), label) if args[1] == "-" else load_settings(args[1])
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{label}: ok ({len(settings.profiles)} profiles, {len(settings.datasets)} datasets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
