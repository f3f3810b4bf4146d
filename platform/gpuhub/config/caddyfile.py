"""The edge's Caddy configuration from the ``[https]`` settings: what ``gpuhub-settings caddyfile``
prints and ``scripts/up`` writes to ``.gpuhub/Caddyfile`` (pure: no files, no Docker).

Why Caddy: it is packaged by Debian (2.6), operators know it, and it does what a site needs with no
code of gpuhub's: ACME certificates obtained and renewed by itself (HTTP-01 and TLS-ALPN), a local CA
(``tls internal``) for a host without a DNS name, the operator's own files, websockets proxied as
they are. CHP's own TLS (``JupyterHub.ssl_cert``) has no ACME and no redirect from HTTP.

Caddy listens on 8080 (HTTP) and 8443 (HTTPS) inside its container, as the caddy user; compose
publishes them on ``GPUHUB_PORT`` and ``GPUHUB_HTTPS_PORT``, which the HTTP redirect names (from the
container's environment), so a site on 80/443 and a laptop on 8000/8443 both redirect right.
"""

from __future__ import annotations

from .access import Https, is_ip_address

HUB = "hub:8000"  # the hub's proxy (CHP) on the compose network `front`
TLS_DIR = "/srv/edge/tls"  # mode "files": .gpuhub/tls, copied there for the caddy user by images/hub/edge.sh
HEADER = """# The edge's Caddy configuration, written by `gpuhub-settings caddyfile` from the [https] settings.
# scripts/up writes it again on every run: edit settings.toml, not this file.
"""


def caddyfile(https: Https, extra_names: tuple[str, ...] = ()) -> str:
    """Caddy's configuration for ``https``; ``extra_names``: more names for the local certificate
    (the host's address, when ``scripts/up`` publishes the hub on every interface)."""
    options = ["admin off", "http_port 8080", "https_port 8443"]
    if https.mode == "off":
        return HEADER + _block("", options + ["auto_https off"]) + "\n" + _block("http://", [f"reverse_proxy {HUB}"])
    options.append("auto_https disable_redirects")  # the redirect below names the published port
    if https.mode == "local":
        names = https.certificate_names(extra_names)
        # a browser sends no server name (SNI) for an IP address: those get the address users are given
        no_sni = next(name for name in [*extra_names, *https.names, "127.0.0.1"] if is_ip_address(name))
        options += ["skip_install_trust", f"default_sni {no_sni}"]
        addresses, tls = [f"https://{name}" for name in names], ["tls internal"]
    elif https.mode == "acme":
        options += [f"email {https.email}"] * bool(https.email) + [f"acme_ca {https.acme_ca}"] * bool(https.acme_ca)
        addresses, tls = [f"https://{https.domain}"], []
    else:  # files: the operator's certificate, for whatever names it covers
        options += [f"default_sni {https.domain}"] * bool(https.domain)
        addresses, tls = ["https://"], [f"tls {TLS_DIR}/cert.pem {TLS_DIR}/key.pem"]
    site = tls + [
        # HSTS would stick to every port of localhost in the browser (browsers ignore it for IP addresses)
        *([
            "@hsts not host localhost",
            f'header @hsts Strict-Transport-Security "max-age={https.hsts_max_age}"',
        ] if https.hsts_max_age else []),
        f"reverse_proxy {HUB}",
    ]
    redirect = ["redir https://{host}:{$GPUHUB_HTTPS_PORT}{uri} 308"]  # 308: a POST stays a POST
    return HEADER + _block("", options) + "\n" + _block(", ".join(addresses), site) + "\n" + _block("http://", redirect)


def _block(address: str, lines: list[str]) -> str:
    head = f"{address} {{" if address else "{"
    return "\n".join([head, *(f"\t{line}" for line in lines), "}"]) + "\n"
