#!/usr/bin/env bash
# Builds the operator and CPU runtime images on this machine without Docker and without
# pulling from an image registry:
#   1. a Debian bookworm root filesystem with python3, made by debootstrap from Debian's
#      packages and imported as a local base image (instead of python:3.11-slim);
#   2. `buildah build` of images/<name>.Containerfile on top of it, with PYTHON_IMAGE
#      pointing at that base (and, for the CPU runtime, torch from PyPI: PyTorch's CPU
#      index is not reachable here).
# Python packages come from PyPI through the host's uv cache (bind-mounted into the build).
# Everything is cached outside the clone: the rootfs tarball under
# ${DSK_CACHE:-~/.cache/deepseek-k8s}/images/, the images in containers-storage, each
# keyed by a content hash, so an unchanged second run takes seconds.
# Usage: images/build-local.sh [operator] [runtime-cpu]   (default: both)
# Prints "<name> <image reference>" per image on stdout; progress goes to stderr.
# Needs root and Debian's buildah, podman, runc and debootstrap (`make images` installs them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${DSK_CACHE:-$HOME/.cache/deepseek-k8s}/images"
mkdir -p "$cache"
log() { printf '[images %4ss] %s\n' "$SECONDS" "$*" >&2; }

for tool in buildah podman debootstrap runc; do
  command -v "$tool" >/dev/null || { echo "build-local.sh: $tool is missing (apt-get install buildah podman runc debootstrap)" >&2; exit 1; }
done
# This sandbox's cgroup v1/v2 hybrid makes crun refuse to start containers; runc copes.
# Its hard limits are below podman's default ulimits, so pass ones that fit.
limits=(--ulimit "nofile=1024:1024" --ulimit "nproc=1024:1024")
# Hosts behind a TLS-inspecting proxy trust an extra CA: lend the host's bundle to the
# build's RUN steps (bind mounts, so nothing of it lands in an image layer) and point pip
# and uv at it.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$cache/pip.conf"
printf 'native-tls = true\n' > "$cache/uv.toml"
tls=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
     --volume "$cache/pip.conf:/etc/pip.conf:ro" --volume "$cache/uv.toml:/etc/uv/uv.toml:ro")

suite=bookworm
mirror="${DSK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=python3,python3-venv,ca-certificates
base_recipe=1  # bump when the way the base is made changes
base_key="$(printf '%s\n' "$suite" "$packages" "$base_recipe" | sha256sum | cut -c1-16)"
base_ref="localhost/deepseek-k8s/debian-python:$suite-$base_key"

ensure_base() {
  if podman image exists "$base_ref"; then log "base $base_ref: cached"; return; fi
  local tarball="$cache/rootfs-$suite-$base_key.tar"
  if [[ ! -f $tarball ]]; then
    local dir; dir="$(mktemp -d "$cache/rootfs.XXXXXX")"
    log "debootstrap $suite ($packages) from $mirror"
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" >&2
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
  fi
  log "importing $tarball as $base_ref"
  podman import --change 'CMD ["/bin/bash"]' "$tarball" "$base_ref" >&2
}

# content_key NAME: hash of everything the image is built from.
content_key() {
  local name="$1"
  {
    echo "$base_ref"
    sha256sum "$here/$name.Containerfile" "$here"/requirements-*.txt "$root/pyproject.toml"
    (cd "$root" && git ls-files -z operator runtime README.md | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

build_image() {
  local name="$1" key ref
  key="$(content_key "$name")"
  ref="localhost/deepseek-k8s/$name:$key"
  if podman image exists "$ref"; then
    log "$name: cached as $ref"
  else
    local extra=()
    [[ $name == runtime-cpu ]] && extra+=(--build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
    log "$name: buildah build -> $ref"
    local t0=$SECONDS
    buildah build --runtime runc --network host "${limits[@]}" "${tls[@]}" \
      --volume "${UV_CACHE_DIR:-$HOME/.cache/uv}:/root/.cache/uv" \
      --build-arg "PYTHON_IMAGE=$base_ref" \
      --build-arg "VERSION=$(sed -nE 's/^version = "(.*)"/\1/p' "$root/pyproject.toml")" \
      --build-arg "REVISION=$(cd "$root" && git rev-parse HEAD)" \
      --build-arg "CREATED=$(date -u +%FT%TZ)" \
      "${extra[@]}" --ignorefile "$here/build.containerignore" --layers -f "$here/$name.Containerfile" -t "$ref" "$root" >&2
    log "$name: built in $((SECONDS - t0))s"
    # Older builds of this image only take disk (the runtime is several GB): drop them.
    podman images --format '{{.Repository}}:{{.Tag}}' "localhost/deepseek-k8s/$name" \
      | grep -vxF "$ref" | xargs -r podman rmi >/dev/null 2>&1 || true
  fi
  echo "$name $ref"
}

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(operator runtime-cpu)
ensure_base
for n in "${names[@]}"; do build_image "$n"; done
