#!/usr/bin/env bash
# Make the local Debian base image that CI (and hosts with no container registry) build gpuhub's images on.
#
#   images/base/make-base-image.sh [TAG]        default TAG: gpuhub/debian-base:<codename>
#
# It takes the Debian mirror and suite from this machine's own apt sources, runs
# `debootstrap --variant=minbase`, and `docker import`s the tree. Nothing is pulled from a registry.
# Re-running is cheap: an existing image with that tag is kept (set GPUHUB_REBUILD_BASE=1 to redo it).
set -euo pipefail

die() { echo "make-base-image: $*" >&2; exit 1; }

# --- the machine's own mirror and suite -------------------------------------------------------
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release; this script needs a Debian host"
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || die "found no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"

tag="${1:-gpuhub/debian-base:$codename}"

command -v docker >/dev/null || die "docker is not installed: apt-get install -y docker.io"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start it with 'dockerd &' (or 'systemctl start docker')"

if [ -z "${GPUHUB_REBUILD_BASE:-}" ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "make-base-image: $tag already exists (GPUHUB_REBUILD_BASE=1 rebuilds it)"
  exit 0
fi

command -v debootstrap >/dev/null || {
  [ "$(id -u)" = 0 ] || die "debootstrap is missing: sudo apt-get install -y debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
}

root=$(mktemp -d /tmp/gpuhub-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-base-image: debootstrap $codename from $mirror into $root"
debootstrap --variant=minbase "$codename" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; die "debootstrap failed (full log: $root.log)"; }
rm -f "$root.log"
# The image's apt must reach the same mirror and security suite the host uses.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $codename main
deb $mirror $codename-updates main
SOURCES
if [ -f /etc/apt/sources.list.d/debian.sources ] && grep -q security /etc/apt/sources.list.d/debian.sources; then
  sec=$(awk '/^URIs:/ && /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  [ -n "$sec" ] && echo "deb $sec $codename-security main" >>"$root/etc/apt/sources.list"
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "make-base-image: built $tag"
