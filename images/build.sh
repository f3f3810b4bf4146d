#!/usr/bin/env bash
# Build gpuhub's images.
#
#   images/build.sh cpu     the CPU variant on a local Debian base (what CI and registry-less hosts use):
#                           gpuhub/pytorch-cuda:cpu (torch 2.13.0, CPU build) and gpuhub/hub:latest
#   images/build.sh cuda    the CUDA variant on the public PyTorch runtime image (needs a registry):
#                           gpuhub/pytorch-cuda:2.7-cuda12.6 and gpuhub/hub:latest
#
# Environment: GPUHUB_BASE_IMAGE overrides the base of both images. PIP_* variables reach pip as usual.
# The Python dependencies are gathered on this host into build/wheelhouse (containers here cannot reach
# PyPI over HTTPS), then installed inside the images with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

variant="${1:-cpu}"
py_version=3.11   # Debian bookworm's python3 and the PyTorch 2.7 images' python
case "$variant" in
  cpu)
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    base="${GPUHUB_BASE_IMAGE:-gpuhub/debian-base:$codename}"
    hub_base="$base"
    user_tag=cpu torch=2.13.0 cuda=none
    if [ -z "${GPUHUB_BASE_IMAGE:-}" ]; then images/base/make-base-image.sh "$base"; fi ;;
  cuda)
    base="${GPUHUB_BASE_IMAGE:-pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime}"
    hub_base="${GPUHUB_BASE_IMAGE:-debian:bookworm-slim}"
    user_tag=2.7-cuda12.6 torch=2.7.1 cuda=12.6 ;;
  *) die "images/build.sh: unknown variant '$variant': use 'cpu' (local Debian base, CPU torch) or 'cuda' (public PyTorch CUDA base)" ;;
esac
ensure_docker
ensure_compose

# --- wheelhouse (offline installs inside the images) ---------------------------------------------
wheelhouse=build/wheelhouse
mkdir -p "$wheelhouse" build/dist
reqs=(-r images/pytorch-cuda/requirements.txt -r images/hub/requirements.txt)
[ "$variant" = cpu ] && reqs+=("torch==$torch")
stamp="$wheelhouse/.requirements-$variant"
want=$(cat images/pytorch-cuda/requirements.txt images/hub/requirements.txt; echo "torch=$torch")
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "images/build.sh: gathering wheels for Python $py_version into $wheelhouse"
  # Pure-Python dependencies published only as sdists become wheels here first.
  grep -v '^#' images/sdist-only.txt | xargs -r python3 -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheelhouse"
  python3 -m pip download --find-links "$wheelhouse" -q --disable-pip-version-check --only-binary=:all: \
    --python-version "$py_version" --implementation cp --abi "cp${py_version/./}" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$wheelhouse" "${reqs[@]}"
  printf '%s' "$want" >"$stamp"
fi
rm -f build/dist/gpuhub-*.whl
python3 -m pip wheel -q --disable-pip-version-check --no-deps -w build/dist . >/dev/null

# --- images: through docker-compose.yml, so its build sections are the ones used ----------------
say "building gpuhub/pytorch-cuda:$user_tag on $base and gpuhub/hub:latest on $hub_base"
GPUHUB_USER_BASE_IMAGE="$base" GPUHUB_HUB_BASE_IMAGE="$hub_base" GPUHUB_TORCH_VERSION="$torch" \
GPUHUB_CUDA_VERSION="$cuda" GPUHUB_VARIANT="$variant" GPUHUB_USER_TAG="$user_tag" \
  $COMPOSE -f docker-compose.yml build -q singleuser hub
say "built gpuhub/pytorch-cuda:$user_tag and gpuhub/hub:latest"
