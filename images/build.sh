#!/usr/bin/env bash
# Build gpuhub's images.
#
#   images/build.sh cpu          the CPU variant on a local Debian base (what CI and registry-less hosts use):
#                                gpuhub/pytorch-cuda:cpu (torch 2.13.0, CPU build) and gpuhub/hub:latest
#   images/build.sh cuda [TAG]   one tag of the matrix (images/matrix.toml; default 2.7-cuda12.6) on the
#                                public PyTorch CUDA runtime image (needs a registry), and gpuhub/hub:latest
#   images/build.sh matrix       every tag of the matrix, then gpuhub/hub:latest
#
# Every build first builds the JupyterLab extension (platform/jupyterlab-gpuhub, npm) and the gpuhub
# wheel that carries it. Environment: GPUHUB_BASE_IMAGE overrides the base of the cpu variant (and of
# the hub image); GPUHUB_NCCL_DEBUG sets the images' NCCL_DEBUG default (WARN). PIP_* reach pip.
# The cpu variant's Python dependencies are gathered on this host into build/wheelhouse (containers
# here cannot reach PyPI over HTTPS) and installed inside the image with --no-index; the CUDA variants
# install them from the package index, as the registry they pull from implies a connected host.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

py_version=3.11   # Debian bookworm's python3 (the cpu variant)
build_labextension() {  # platform/jupyterlab-gpuhub → platform/gpuhub/labextension (in the wheel)
  command -v npm >/dev/null || apt_install nodejs npm
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
    || die "the JupyterLab extension's builder (rspack) needs Node.js >= 20.19; this machine has $(node --version): install a newer Node.js"
  local dir=platform/jupyterlab-gpuhub stamp=platform/jupyterlab-gpuhub/node_modules/.gpuhub-lock
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    # npm install, not npm ci: npm ci refuses a lock that lists only this platform's rspack binding
    # (the other platforms' optional bindings); npm install takes the locked versions and keeps the lock.
    say "installing the JupyterLab extension's build tools (npm install in $dir)"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null) || die "npm install in $dir failed"
    cp "$dir/package-lock.json" "$stamp"
  fi
  (cd "$dir" && npm run --silent build >/dev/null) || die "the JupyterLab extension did not build: cd $dir && npm run build"
  [ -f platform/gpuhub/labextension/package.json ] || die "the JupyterLab extension build left no platform/gpuhub/labextension"
}

build_wheel() {
  mkdir -p build/dist
  rm -f build/dist/gpuhub-*.whl
  python3 -m pip wheel -q --disable-pip-version-check --no-deps -w build/dist . >/dev/null
}

gather_wheelhouse() {  # the cpu variant's offline wheelhouse
  local wheelhouse=build/wheelhouse torch=$1
  mkdir -p "$wheelhouse"
  local stamp="$wheelhouse/.requirements-cpu"
  local want; want=$(cat images/pytorch-cuda/requirements.txt images/hub/requirements.txt; echo "torch=$torch")
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "gathering wheels for Python $py_version into $wheelhouse"
    # Pure-Python dependencies published only as sdists become wheels here first.
    grep -v '^#' images/sdist-only.txt | xargs -r python3 -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheelhouse"
    python3 -m pip download --find-links "$wheelhouse" -q --disable-pip-version-check --only-binary=:all: \
      --python-version "$py_version" --implementation cp --abi "cp${py_version/./}" \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d "$wheelhouse" -r images/pytorch-cuda/requirements.txt -r images/hub/requirements.txt "torch==$torch"
    printf '%s' "$want" >"$stamp"
  fi
}

build_images() {  # build_images SERVICES... (through docker-compose.yml, so its build sections are the ones used)
  GPUHUB_USER_BASE_IMAGE="$user_base" GPUHUB_HUB_BASE_IMAGE="$hub_base" GPUHUB_TORCH_VERSION="$torch" \
  GPUHUB_CUDA_VERSION="$cuda" GPUHUB_VARIANT="$variant" GPUHUB_USER_TAG="$user_tag" GPUHUB_WHEELHOUSE="$wheelhouse" \
    $COMPOSE -f docker-compose.yml build -q "$@"
}

variant="${1:-cpu}"
case "$variant" in
  cpu)
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    user_base="${GPUHUB_BASE_IMAGE:-gpuhub/debian-base:$codename}" hub_base="$user_base"
    user_tag=cpu torch=2.13.0 cuda=none wheelhouse=build/wheelhouse
    tags=(cpu) ;;
  cuda)
    tags=("${2:-$(python3 images/matrix.py default)}")
    hub_base="${GPUHUB_BASE_IMAGE:-debian:bookworm-slim}" wheelhouse=build/no-wheelhouse ;;
  matrix)
    mapfile -t tags < <(python3 images/matrix.py tags)
    variant=cuda hub_base="${GPUHUB_BASE_IMAGE:-debian:bookworm-slim}" wheelhouse=build/no-wheelhouse ;;
  *) die "images/build.sh: unknown variant '$variant': use 'cpu' (local Debian base, CPU torch), 'cuda [TAG]' (one tag of images/matrix.toml) or 'matrix'" ;;
esac
ensure_docker
ensure_compose

build_labextension
build_wheel
mkdir -p build/no-wheelhouse
if [ "$variant" = cpu ]; then
  [ -z "${GPUHUB_BASE_IMAGE:-}" ] && images/base/make-base-image.sh "$user_base"
  gather_wheelhouse "$torch"
fi

for tag in "${tags[@]}"; do
  if [ "$variant" = cuda ]; then
    eval "$(python3 images/matrix.py row "$tag")"   # torch, cuda, cuda_base
    user_base="$cuda_base" user_tag="$tag"
  fi
  say "building gpuhub/pytorch-cuda:$user_tag on $user_base"
  build_images singleuser
done
say "building gpuhub/hub:latest on $hub_base"
build_images hub
say "built gpuhub/pytorch-cuda:{$(IFS=,; echo "${tags[*]}")} and gpuhub/hub:latest"
