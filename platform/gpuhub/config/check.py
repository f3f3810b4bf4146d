"""``gpuhub-settings``: validate a settings file without starting the hub (``check``), derive the
simulated-GPU demo's settings from it (``demo``, what ``scripts/up --demo`` runs), write the edge's
Caddy configuration from its ``[https]`` table (``caddyfile``) and check a certificate with its key
(``tls-check``)."""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
import sys
import tomllib
from datetime import date, datetime, time
from pathlib import Path

from .access import host_name
from .caddyfile import caddyfile
from .schema import load_settings, parse_settings
from .sections import SettingsError
from .tls import check_certificate_pair

USAGE = """usage: gpuhub-settings check SETTINGS.toml   validate a settings file (- reads standard input)
       gpuhub-settings demo SETTINGS.toml    print the simulated-GPU demo's settings derived from it
       gpuhub-settings caddyfile SETTINGS.toml [NAME ...]   print the edge's Caddyfile ([https]; NAMEs:
                                             more names for the local certificate)
       gpuhub-settings https SETTINGS.toml   print [https] as shell assignments (what scripts/up reads)
       gpuhub-settings tls-check CERT.pem KEY.pem   check a certificate (with its chain) and its key"""

DEMO_INVENTORY = "/srv/gpuhub/inventory.toml"  # where docker-compose.yml mounts $GPUHUB_INVENTORY_FILE
DEMO_IMAGE = "gpuhub/pytorch-cuda:cpu"  # the user image every host can build (images/build.sh cpu)


def main(argv=None) -> int:
    """``gpuhub-settings check FILE`` (``-``: standard input): validate a settings file, exit 0 if good,
    2 with the reason if not. ``docker-compose exec -T hub gpuhub-settings check - < settings.toml``
    checks the file as edited on the host with the hub's own code (a single-file bind mount can
    show the container an older copy until the hub restarts).

    ``gpuhub-settings demo FILE``: the same file made into the SIMULATED-GPU demo (``demo_settings``),
    checked by the same loader and printed as TOML on standard output; exit 2 with the reason if the
    file or the result is not valid."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["tls-check"] and len(args) == 3:
        return tls_check(args[1], args[2])
    if not (len(args) == 2 and args[0] in ("check", "demo", "https") or len(args) >= 2 and args[0] == "caddyfile"):
        print(USAGE, file=sys.stderr)
        return 2
    command, path, names = args[0], args[1], tuple(args[2:])
    label = "settings (stdin)" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
            settings = parse_settings(text, label)
        else:
            settings = load_settings(path)
            text = Path(path).read_text(encoding="utf-8")
        if command == "demo":
            text = demo_text(text, label)
            settings = parse_settings(text, f"demo settings derived from {label}")
        if command == "caddyfile":
            names = tuple(host_name(name) for name in names if name)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: caddyfile NAME: {e}. Accepted: DNS names or IP addresses", file=sys.stderr)
        return 2
    if command == "caddyfile":
        sys.stdout.write(caddyfile(settings.https, names))
        return 0
    if command == "https":
        https = settings.https
        for key in ("mode", "domain", "certificate", "key"):
            print(f"https_{key}={shlex.quote(getattr(https, key))}")
        return 0
    if command == "demo":
        sys.stdout.write(text)
        gpu_profiles = [p.name for p in settings.profiles if p.wants_gpu]
        print(
            f"{label}: demo settings ok: SIMULATED GPUs ({settings.gpus.inventory}, exposure"
            f" {settings.gpus.exposure}); GPU profiles {', '.join(gpu_profiles) or '(none)'} run {DEMO_IMAGE}",
            file=sys.stderr,
        )
        return 0
    print(f"{label}: ok ({len(settings.profiles)} profiles, {len(settings.datasets)} datasets)")
    return 0


def tls_check(certificate: str, key: str) -> int:
    """``gpuhub-settings tls-check CERT KEY``: exit 0 if ``certificate`` (PEM, with its chain) and
    ``key`` (its unencrypted PEM private key) can serve TLS together, else 2 with the reason, before
    the edge is given them (``[https] mode = "files"``)."""
    try:
        check_certificate_pair(certificate, key)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{certificate}: ok, with {key}")
    return 0


def demo_settings(data: dict, image: str = DEMO_IMAGE, inventory: str = DEMO_INVENTORY) -> dict:
    """A copy of the settings table ``data`` (valid settings, as TOML loads them) for a demo on a host
    without NVIDIA GPUs: ``[gpus]`` reads the SIMULATED inventory file ``inventory`` and exposes GPUs
    as environment variables only (``env-only``); every GPU profile runs ``image`` (the CPU build of the
    user image, which any host can build), which joins ``[spawner] allowed_images``. Everything else
    (names, quotas, limits, authentication) is kept."""
    parsed = parse_settings(_dump_toml(data), "settings")  # the loader's view: defaults, wants_gpu
    demo = copy.deepcopy(data)
    gpus = demo.setdefault("gpus", {})
    gpus["inventory"] = f"file:{inventory}"
    gpus["exposure"] = "env-only"
    for table, profile in zip(demo.get("profiles", []), parsed.profiles, strict=True):
        if profile.wants_gpu:
            table["image"] = image
    allowed = list(parsed.spawner.allowed_images)
    if image not in allowed:
        allowed.append(image)
    demo.setdefault("spawner", {})["allowed_images"] = allowed
    return demo


def demo_text(text: str, source: str = "settings") -> str:
    """``demo_settings`` of the TOML ``text``, as TOML with a header saying what it is (comments of the
    source are not carried over)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{source}: not valid TOML: {e}") from None
    header = (
        "# SIMULATED GPUs: the simulated-GPU demo's settings, written by `gpuhub-settings demo` from\n"
        f"# {source}. Do not edit: `scripts/up` writes it again from that file on every run.\n"
        f"# [gpus] reads the simulated inventory (exposure env-only: no real device reaches a container);\n"
        f"# the GPU profiles run {DEMO_IMAGE}.\n\n"
    )
    return header + _dump_toml(demo_settings(data))


# --- a TOML writer for what tomllib reads from a settings file --------------------------------------
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _dump_toml(data: dict) -> str:
    """``data`` (tables, arrays of tables, strings, numbers, booleans, dates, arrays) as TOML text that
    ``tomllib.loads`` reads back equal."""
    lines: list[str] = []
    _emit_table(data, [], lines)
    text = "\n".join(lines).strip("\n") + "\n"
    if tomllib.loads(text) != data:  # a value this writer cannot express: never write a different file
        raise SettingsError("settings: cannot write these settings back as TOML")
    return text


def _emit_table(table: dict, path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            lines += ["", f"[{_dotted([*path, key])}]"]
            _emit_table(value, [*path, key], lines)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{_dotted([*path, key])}]]"]
                _emit_table(item, [*path, key], lines)


def _is_table(value) -> bool:
    return isinstance(value, dict)


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _dotted(path: list[str]) -> str:
    return ".".join(_key(k) for k in path)


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise SettingsError(f"settings: cannot write {value!r} as TOML")


if __name__ == "__main__":
    sys.exit(main())
