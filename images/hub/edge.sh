#!/bin/sh
# The edge's start (docker-compose.yml's `edge` service, from the hub image): the operator's certificate
# and key ([https] mode = "files", copied by scripts/up to .gpuhub/tls, readable by their owner only)
# handed to the caddy user, then Caddy itself, as that user (it listens on 8080/8443: no privilege).
set -eu
if [ -f /etc/gpuhub/tls/cert.pem ] && [ -f /etc/gpuhub/tls/key.pem ]; then
  install -d -o caddy -g caddy -m 0700 /srv/edge/tls
  install -o caddy -g caddy -m 0600 /etc/gpuhub/tls/cert.pem /etc/gpuhub/tls/key.pem /srv/edge/tls/
fi
chown caddy:caddy /srv/edge/data
exec setpriv --reuid=caddy --regid=caddy --init-groups caddy run --config /etc/caddy/Caddyfile --adapter caddyfile
