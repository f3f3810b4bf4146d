"""How people reach the hub: the ``[https]`` table (the compose deployment's TLS front door).

The hub itself always speaks plain HTTP on the compose network; Caddy (``docker-compose.yml``'s
``edge`` service, from the hub image) terminates TLS in front of it, with a certificate from an ACME
CA for a site with a DNS name, from a local CA made at first start, or from the operator's files
(``gpuhub.config.caddyfile`` writes its configuration from this table).
"""

from __future__ import annotations

import ipaddress
import re

from traitlets import Enum, Integer, List, Unicode, validate

from .sections import Section, SettingsError, optional_absolute_path

# a DNS name (letters, digits, hyphens; dots between labels; no trailing dot)
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(value: str) -> str:
    """``value`` if it is a DNS name or an IP address, else a ``TraitError``-able message."""
    if is_ip_address(value) or _DNS_NAME.match(value):
        return value
    raise ValueError("not a DNS name or an IP address")


class Https(Section):
    section_help = """HTTPS in front of the hub (the compose deployment: ``scripts/up``). Caddy, in the
    ``edge`` service, terminates TLS on ``GPUHUB_HTTPS_PORT`` (8443; 443 on a site) and answers plain
    HTTP on ``GPUHUB_PORT`` (8000; 80 on a site) with a redirect to HTTPS; HSTS is sent for every
    name but localhost and IP addresses; cookies are ``Secure``; websockets (kernels, terminals)
    pass through. See docs/security.md."""

    mode = Enum(
        ["local", "acme", "files", "off"],
        default_value="local",
        help="""Where the certificate comes from.
        ``"local"`` (default): a local certificate authority made at the first start (kept in the
        ``edge-data`` volume) signs a certificate for ``localhost``, ``127.0.0.1``, ``domain`` and
        ``names``; ``scripts/up`` prints the authority's SHA-256 fingerprint and copies its certificate
        to ``.gpuhub/local-ca.crt`` (give that to browsers to trust).
        ``"acme"``: a certificate for ``domain`` from Let's Encrypt (or ``acme_ca``), renewed
        automatically; ``domain`` must resolve to this host and ports 80 and 443 must reach it
        (``GPUHUB_BIND=0.0.0.0 GPUHUB_PORT=80 GPUHUB_HTTPS_PORT=443``).
        ``"files"``: your own certificate and key (``certificate``, ``key``).
        ``"off"``: plain HTTP on ``GPUHUB_PORT`` (only behind a TLS proxy of your own, or for tests:
        passwords otherwise cross the network in clear). Example: ``"acme"``.""",
    ).tag(accepted='"local", "acme", "files" or "off"')

    domain = Unicode(
        "",
        help="""The site's DNS name, as users type it. Needed by ``"acme"``; with ``"local"`` and
        ``"files"`` it is the name ``scripts/up`` prints (and the local certificate's first name).
        Example: ``"gpu.example.edu"``.""",
    ).tag(accepted='a DNS name such as "gpu.example.edu"')

    names = List(
        Unicode(),
        help="""``"local"``: more names or IP addresses the local certificate is for (``scripts/up``
        adds the host's address when ``GPUHUB_BIND=0.0.0.0``). Example: ``["gpu-lab", "10.0.0.5"]``.""",
    ).tag(accepted="a list of DNS names or IP addresses")

    email = Unicode(
        "",
        help="""``"acme"``: the contact address given to the CA (expiry notices). Example:
        ``"ops@example.edu"``.""",
    ).tag(accepted="an e-mail address")

    acme_ca = Unicode(
        "",
        help="""``"acme"``: the ACME directory URL; empty: Let's Encrypt's (Caddy's default, with
        ZeroSSL as fallback). Example: ``"https://acme-staging-v02.api.letsencrypt.org/directory"``.""",
    ).tag(accepted="an https:// URL")

    certificate = Unicode(
        "",
        help="""``"files"``: the PEM certificate (with its chain) on the Docker host. ``scripts/up``
        checks it against ``key`` and copies both to ``.gpuhub/tls/``. Example:
        ``"/etc/ssl/gpu.example.edu/fullchain.pem"``.""",
    ).tag(accepted="an absolute path")

    key = Unicode(
        "",
        help="""``"files"``: the certificate's PEM private key (unencrypted) on the Docker host.
        Example: ``"/etc/ssl/gpu.example.edu/privkey.pem"``.""",
    ).tag(accepted="an absolute path")

    hsts_max_age = Integer(
        31536000,
        help="""Seconds browsers remember to use only HTTPS for the site (HSTS; not sent for localhost
        or an IP address, where it would stick to every local port). ``0`` sends none. Example:
        ``31536000`` (a year).""",
        min=0,
        max=63072000,
    )

    @validate("domain")
    def _validate_domain(self, proposal):
        value = proposal["value"]
        if value and (is_ip_address(value) or not _DNS_NAME.match(value)):
            raise ValueError("not a DNS name (an IP address goes in names)")
        return value

    @validate("names")
    def _validate_names(self, proposal):
        return [host_name(name) for name in proposal["value"]]

    @validate("email")
    def _validate_email(self, proposal):
        value = proposal["value"]
        if value and not _EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value

    @validate("acme_ca")
    def _validate_acme_ca(self, proposal):
        value = proposal["value"]
        if value and not re.match(r"^https://[^/\s]+(/\S*)?$", value):
            raise ValueError("not an https:// URL")
        return value

    @validate("certificate", "key")
    def _validate_paths(self, proposal):
        return optional_absolute_path(proposal["value"])

    def check(self, root, where: str) -> None:
        if self.mode == "acme" and not self.domain:
            raise SettingsError(
                f'{where}.domain: mode = "acme" needs the site\'s DNS name. Accepted: a DNS name such as "gpu.example.edu"'
                ' (without one, mode = "local" makes a certificate from a local CA)', f"{where}.domain",
            )
        if self.mode == "files":
            for key in ("certificate", "key"):
                if not getattr(self, key):
                    raise SettingsError(
                        f'{where}.{key}: mode = "files" needs the certificate and its key. Accepted: an absolute path', f"{where}.{key}"
                    )
        elif self.certificate or self.key:
            raise SettingsError(
                f'{where}.certificate: set with mode = "{self.mode}", which does not use it. Accepted: mode = "files"'
                ", or remove certificate and key", f"{where}.certificate",
            )

    def certificate_names(self, extra: tuple[str, ...] = ()) -> list[str]:
        """The names the ``"local"`` certificate is for: ``domain`` first, localhost, ``names``, ``extra``."""
        names = [self.domain] if self.domain else []
        names += ["localhost", "127.0.0.1", *self.names, *extra]
        return list(dict.fromkeys(names))
