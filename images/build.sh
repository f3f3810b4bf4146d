#!/usr/bin/env bash
# Build gpuhub's images.
#
#   images/build.sh cpu          the CPU variant on a local Debian base (what CI and registry-less hosts use):
#                                gpuhub/pytorch-cuda:cpu (torch 2.13.0, CPU build) and gpuhub/hub:latest
#   images/build.sh cuda [TAG]   one tag of the matrix (images/matrix.toml; default 2.7-cuda12.6) on the
#                                public PyTorch CUDA runtime image (needs a registry), and gpuhub/hub:latest
#   images/build.sh matrix       every tag of the matrix, then gpuhub/hub:latest
#   images/build.sh labextension only the JupyterLab extension (platform/jupyterlab-gpuhub → platform/gpuhub/labextension)
#
# Re-running is cheap: each image carries a digest of its inputs (the label org.gpuhub.inputs: the
# sources a commit would hold under platform/, the image's folder and Dockerfile, pyproject.toml,
# docker-compose.yml, this script, for the hub its config and settings, the wheelhouse's listing, the
# base image's id and the build arguments), and an image whose digest matches is not built again
# (GPUHUB_REBUILD=1 forces it). A rebuild removes the image it replaced when no container uses it
# (scripts/up removes it once the hub has moved to the new one). Before an image is built, the
# JupyterLab extension (npm install --no-save: the locked versions, and package-lock.json is never
# rewritten) and the gpuhub wheel that carries it are built.
# Environment: GPUHUB_BASE_IMAGE overrides the base of the cpu variant (and of
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
    # --no-save: npm installs the locked versions and never writes package-lock.json (or package.json),
    # so a build leaves the working tree as it was even where this npm would write the lock differently
    # (another npm version; a lock that lists only some platforms' optional rspack bindings, which npm ci
    # refuses). To change the dependencies: edit package.json, run `npm install` there, commit the lock.
    say "installing the JupyterLab extension's build tools (npm install --no-save in $dir)"
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error >/dev/null) || die "npm install in $dir failed"
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

# --- what an image is built from, and whether the image already has it ---------------------------------
source_files() {  # source_files PATH...: the files under PATHs a commit would hold (git's view), NUL-separated
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- "$@"
  else  # an unpacked tarball: leave out what .gitignore names
    find "$@" \( -name node_modules -o -name __pycache__ -o -name lib -o -name labextension -o -name '*.egg-info' \
      -o -name tsconfig.tsbuildinfo \) -prune -o -type f -print0
  fi
}

inputs_digest() {  # inputs_digest ARGS PATH...: sha256 of the build arguments ARGS and of the files under PATHs
  local args=$1 files=() f; shift
  while IFS= read -r -d '' f; do [ -f "$f" ] && files+=("$f"); done < <(source_files "$@" | LC_ALL=C sort -z -u)
  { printf '%s\n' "$args"; sha256sum -- "${files[@]}"; } | sha256sum | cut -d' ' -f1
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_inputs() { docker image inspect -f '{{index .Config.Labels "org.gpuhub.inputs"}}' "$1" 2>/dev/null || true; }

base_id() {  # the base image's id (pulled first where it is missing and a registry is in reach)
  docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1 || true
  image_id "$1"
}

wheelhouse_listing() {  # the wheelhouse's wheels (names carry versions) and sizes
  find "$wheelhouse" -maxdepth 1 -type f -printf '%f %s\n' 2>/dev/null | LC_ALL=C sort
}

# The inputs of each image, beyond the build arguments (the build contexts' files: .dockerignore).
common_inputs=(pyproject.toml platform images/build.sh .dockerignore docker-compose.yml)
user_inputs=("${common_inputs[@]}" images/pytorch-cuda)
hub_inputs=("${common_inputs[@]}" images/hub jupyterhub_config.py settings.toml)

build_images() {  # build_images SERVICE INPUTS-DIGEST (through docker-compose.yml, so its build sections are the ones used)
  GPUHUB_USER_BASE_IMAGE="$user_base" GPUHUB_HUB_BASE_IMAGE="$hub_base" GPUHUB_TORCH_VERSION="$torch" \
  GPUHUB_CUDA_VERSION="$cuda" GPUHUB_VARIANT="$variant" GPUHUB_USER_TAG="$user_tag" GPUHUB_WHEELHOUSE="$wheelhouse" \
  GPUHUB_IMAGE_INPUTS="$2" $COMPOSE -f docker-compose.yml build -q "$1"
}

sources_built=""
build_if_changed() {  # build_if_changed SERVICE IMAGE BASE DIGEST: build IMAGE on BASE unless it already has DIGEST
  local service=$1 image=$2 base=$3 digest=$4 old new
  if [ -z "${GPUHUB_REBUILD:-}" ] && [ "$(image_inputs "$image")" = "$digest" ]; then
    say "$image is up to date (nothing it is built from changed)"
    return 0
  fi
  if [ -z "$sources_built" ]; then
    build_labextension
    build_wheel
    sources_built=1
  fi
  old=$(image_id "$image")
  say "building $image on $base"
  build_images "$service" "$digest"
  new=$(image_id "$image")
  [ -n "$old" ] && [ "$old" != "$new" ] && remove_replaced_images
  return 0
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
  labextension)
    build_labextension
    say "built platform/gpuhub/labextension"
    exit 0 ;;
  *) die "images/build.sh: unknown variant '$variant': use 'cpu' (local Debian base, CPU torch), 'cuda [TAG]' (one tag of images/matrix.toml), 'matrix' or 'labextension'" ;;
esac
ensure_docker
ensure_compose

mkdir -p build/no-wheelhouse
if [ "$variant" = cpu ]; then
  [ -z "${GPUHUB_BASE_IMAGE:-}" ] && images/base/make-base-image.sh "$user_base"
  gather_wheelhouse "$torch"
fi
nccl_debug="${GPUHUB_NCCL_DEBUG:-WARN}"
wheels=$(wheelhouse_listing)

for tag in "${tags[@]}"; do
  if [ "$variant" = cuda ]; then
    eval "$(python3 images/matrix.py row "$tag")"   # torch, cuda, cuda_base
    user_base="$cuda_base" user_tag="$tag"
  fi
  digest=$(inputs_digest "user base=$user_base@$(base_id "$user_base") torch=$torch cuda=$cuda variant=$variant
nccl_debug=$nccl_debug wheelhouse=$wheelhouse
$wheels" "${user_inputs[@]}")
  build_if_changed singleuser "gpuhub/pytorch-cuda:$user_tag" "$user_base" "$digest"
done
digest=$(inputs_digest "hub base=$hub_base@$(base_id "$hub_base") wheelhouse=$wheelhouse
$wheels" "${hub_inputs[@]}")
build_if_changed hub gpuhub/hub:latest "$hub_base" "$digest"
say "gpuhub/pytorch-cuda:{$(IFS=,; echo "${tags[*]}")} and gpuhub/hub:latest are ready"
