# Shared by scripts/up, scripts/test, images/build.sh and .ci/run: find or provide what gpuhub needs
# on a Debian host, or say exactly what to do. Source it; do not run it.

say() { echo "gpuhub: $*" >&2; }
die() { echo "gpuhub: error: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {  # apt_install PACKAGE... (as root; otherwise say the command)
  is_root || die "missing $*: run 'sudo apt-get install -y $*' and try again"
  if [ -z "${_GPUHUB_APT_UPDATED:-}" ]; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    _GPUHUB_APT_UPDATED=1
  fi
  say "installing $* (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

ensure_docker() {  # a Docker engine that answers; started here when installed but not running
  command -v docker >/dev/null && command -v dockerd >/dev/null || apt_install docker.io
  docker info >/dev/null 2>&1 && return 0
  is_root || die "no Docker engine answers: start it ('sudo systemctl start docker' or 'sudo dockerd &')"
  if command -v systemctl >/dev/null && systemctl start docker >/dev/null 2>&1; then
    for _ in $(seq 15); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  fi
  say "starting dockerd in the background (log: /var/log/gpuhub-dockerd.log)"
  setsid dockerd >/var/log/gpuhub-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  tail -20 /var/log/gpuhub-dockerd.log >&2 2>/dev/null
  die "dockerd did not answer within 60 s (log above)"
}

ensure_compose() {  # sets COMPOSE to "docker compose" (v2) or "docker-compose" (1.29)
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"
  else
    command -v docker-compose >/dev/null || apt_install docker-compose
    COMPOSE="docker-compose"
  fi
}

host_variant() {  # "cuda" where the engine has the NVIDIA runtime, else "cpu"; GPUHUB_VARIANT overrides
  if [ -n "${GPUHUB_VARIANT:-}" ]; then echo "$GPUHUB_VARIANT"
  elif docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then echo cuda
  else echo cpu; fi
}

wait_http() {  # wait_http URL SECONDS
  local url=$1 seconds=$2
  for _ in $(seq "$seconds"); do
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

wait_healthy() {  # wait_healthy CONTAINER SECONDS: until its health check passes
  local container=$1 seconds=$2
  for _ in $(seq "$seconds"); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null)" = healthy ] && return 0
    sleep 1
  done
  return 1
}

wait_https() {  # wait_https PORT SECONDS NAME CAFILE: /hub/health over TLS on 127.0.0.1:PORT, asking for
  # NAME's certificate (SNI) and checking it against CAFILE ("system": the system's CAs; "": not checked)
  python3 - "$@" <<'PY'
import socket, ssl, sys, time
port, seconds, name, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if cafile:
    context = ssl.create_default_context(cafile=None if cafile == "system" else cafile)
else:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET /hub/health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            if tls.recv(64).startswith(b"HTTP/1.1 200"):
                sys.exit(0)
    except (OSError, ssl.SSLError):
        pass
    time.sleep(1)
sys.exit(1)
PY
}

pem_fingerprint() {  # pem_fingerprint FILE: a PEM certificate's SHA-256 fingerprint, AA:BB:...
  python3 -c 'import hashlib, ssl, sys; h = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest().upper(); print(":".join(h[i:i + 2] for i in range(0, 64, 2)))' "$1"
}

remove_replaced_images() {  # gpuhub's images a rebuild replaced (untagged, labelled by images/build.sh) that no container uses
  local id removed=0 kept=0
  for id in $(docker images -q --no-trunc -f dangling=true -f label=org.gpuhub.inputs 2>/dev/null | sort -u); do
    if docker image rm "$id" >/dev/null 2>&1; then removed=$((removed + 1)); else kept=$((kept + 1)); fi
  done
  [ "$removed" = 0 ] || say "removed $removed image(s) replaced by a rebuild"
  [ "$kept" = 0 ] || say "kept $kept replaced image(s) still used by a container (scripts/up removes them once unused)"
  return 0
}

ensure_network() {  # ensure_network NAME: the network the hub and users' containers share (external to compose)
  docker network inspect "$1" >/dev/null 2>&1 && return 0
  say "creating the Docker network $1 (the hub and the users' servers)"
  docker network create --label org.gpuhub.network=true "$1" >/dev/null || die "docker network create $1 failed"
}
