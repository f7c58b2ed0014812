#!/usr/bin/env bash
# Installs the system packages the tests need: Prometheus and promtool from Debian's
# `prometheus` package, and `lua5.4` (runs the Argo CD health check in
# manifests/gitops/ under test). Idempotent: does nothing when the binaries exist; runs
# `apt-get update` only when the package lists are missing or older than a day.
# The package's own service is stopped and disabled: tests start their own Prometheus on
# 127.0.0.1. Called by `make system-deps`.
# `install-system-deps.sh images` instead installs what `make images` needs to build and
# run containers without Docker: buildah, podman, runc and debootstrap.
set -euo pipefail

if [[ ${1:-} == images ]]; then
  need=()
  for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
  if [[ ${#need[@]} -eq 0 ]]; then echo "[system-deps] buildah, podman, runc, debootstrap present"; exit 0; fi
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo -n"
  echo "[system-deps] apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
  exit 0
fi

if [[ -x /usr/bin/prometheus && -x /usr/bin/promtool && -x /usr/bin/lua5.4 ]]; then
  echo "[system-deps] prometheus, promtool and lua5.4 present: $(/usr/bin/prometheus --version 2>&1 | head -1)"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "[system-deps] need root or sudo to apt-get install prometheus" >&2; exit 1; }
  sudo="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive

# Keep the package's post-install script from starting a system Prometheus (on :9090).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
  $sudo chmod +x $policy
  created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then $sudo rm -f $policy; fi; }
trap cleanup EXIT

if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1) ]]; then
  echo "[system-deps] apt-get update"
  $sudo apt-get update -q
fi
echo "[system-deps] apt-get install prometheus lua5.4"
$sudo apt-get install -y -q --no-install-recommends prometheus lua5.4

# If a service manager started it anyway, stop it and keep it off.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  $sudo systemctl disable --now prometheus.service 2>/dev/null || true
fi
if command -v service >/dev/null; then
  $sudo service prometheus stop 2>/dev/null || true
fi
echo "[system-deps] done: $(/usr/bin/prometheus --version 2>&1 | head -1)"
