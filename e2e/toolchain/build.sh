#!/usr/bin/env bash
# Builds the local control plane's tools from the pinned Go wrapper modules in this folder,
# one binary at a time, into ${DSK_CACHE:-$HOME/.cache/deepseek-k8s}/bin/<tool>-<version>/.
# A tool whose output folder is complete is skipped, so a second run takes seconds.
# Called by `make toolchain`; e2e/devcluster finds the binaries at the same paths.
# Usage: build.sh [tool ...]   (tools: etcd kube-apiserver kube-controller-manager
#                               kube-scheduler kubectl kwok helm kstatus keda crds; default: all)
# keda (operator + metrics adapter, for e2e/live) is the slowest: 44 min cold on 2 busy cores,
# under 2 min to relink from a warm Go build cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${DSK_CACHE:-$HOME/.cache/deepseek-k8s}"
bin_root="$cache/bin"
export CGO_ENABLED=0 GOFLAGS="${DSK_GOFLAGS:--p=2} -trimpath -buildvcs=false" GOTOOLCHAIN=local
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
command -v go >/dev/null || { echo "build.sh: go is not on PATH (need Go >= 1.24)" >&2; exit 1; }

start_all=$SECONDS
log() { printf '[toolchain %4ss] %s\n' "$((SECONDS - start_all))" "$*"; }

k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
k8s_ldflags() {
  local f="" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    f+=" -X $p.gitTreeState=clean"
  done
  echo "-s -w$f"
}

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kstatus) echo "$CLI_UTILS_VERSION" ;;
    keda) echo "$KEDA_VERSION" ;;
    *) echo "$K8S_VERSION" ;;
  esac
}

# build_tool TOOL: go build every `tool` package of TOOL's wrapper module into its cache dir.
build_tool() {
  local tool="$1" version dir out tmp ldflags pkgs t0
  version="$(version_of "$tool")"
  dir="$here/$tool"; out="$bin_root/$tool-$version"
  [[ -f "$dir/go.mod" ]] || { echo "build.sh: unknown tool $tool" >&2; exit 2; }
  if [[ -f "$out/.complete" ]]; then log "$tool $version: cached in $out"; return; fi
  case "$tool" in
    etcd) ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" ;;
    kstatus) ldflags="-s -w" ;;
    keda) ldflags="-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" ;;
    kwok) ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
          ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" ;;
    helm) local cg; cg="$(grep -E '^\s*k8s.io/client-go v' "$dir/go.mod" | awk '{print $2}')"
          cg="${cg#v0.}"; cg="${cg%%.*}"
          ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
          ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
          for p in pkg/lint/rules pkg/chartutil; do
            ldflags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$cg"
          done ;;
    *) ldflags="$(k8s_ldflags)" ;;
  esac
  local pinned
  case "$tool" in
    etcd) pinned="go.etcd.io/etcd/server/v3 $version" ;; kwok) pinned="sigs.k8s.io/kwok $version" ;;
    helm) pinned="helm.sh/helm/v3 $version" ;; kstatus) pinned="sigs.k8s.io/cli-utils $version" ;;
    keda) pinned="github.com/kedacore/keda/v2 $version" ;;
    *) pinned="k8s.io/kubernetes $version" ;;
  esac
  if ! grep -qF "$pinned" "$dir/go.mod"; then
    echo "build.sh: $dir/go.mod does not require $pinned: run e2e/toolchain/gen-modules.sh" >&2
    exit 2
  fi
  mapfile -t pkgs < <(awk '$1 == "tool" {print $2}' "$dir/go.mod")
  [[ ${#pkgs[@]} -gt 0 ]] || pkgs=(.)  # a wrapper with its own main package (kstatus)
  tmp="$out.tmp.$$"; rm -rf "$tmp"; mkdir -p "$tmp"
  t0=$SECONDS
  log "$tool $version: downloading modules"
  (cd "$dir" && go mod download)
  log "$tool $version: modules ready after $((SECONDS - t0))s; compiling ${pkgs[*]}"
  (cd "$dir" && go build -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
  if [[ "$tool" == etcd ]]; then mv "$tmp/server" "$tmp/etcd"; fi  # package dir is server/v3
  if [[ "$tool" == keda ]]; then mv "$tmp/operator" "$tmp/keda-operator"; mv "$tmp/adapter" "$tmp/keda-adapter"; fi
  rm -rf "$out"; mv "$tmp" "$out"; date -u +%FT%TZ > "$out/.complete"
  log "$tool $version: built in $((SECONDS - t0))s -> $out"
}

# fetch_crd_modules: put the Go modules that ship the third-party CRDs into the module cache,
# so `python -m e2e.devcluster up` later reads them offline.
fetch_crd_modules() {
  local t0=$SECONDS m
  for m in "istio.io/api@$ISTIO_API_VERSION" \
           "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
           "sigs.k8s.io/lws@$LWS_VERSION" "github.com/kedacore/keda/v2@$KEDA_VERSION" \
           "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"; do
    (cd "$here" && GOFLAGS=-mod=mod go mod download "$m")
  done
  log "CRD modules in the module cache ($((SECONDS - t0))s)"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm kstatus keda crds)
mkdir -p "$bin_root"
# One build at a time on this machine (parallel `make test` runs share the cache).
exec 9>"$bin_root/.build.lock"
if ! flock -n 9; then log "another build.sh holds $bin_root/.build.lock: waiting"; flock 9; fi
log "building ${tools[*]} into $bin_root ($(go version | cut -d' ' -f3), GOFLAGS=$GOFLAGS)"
for t in "${tools[@]}"; do
  if [[ $t == crds ]]; then fetch_crd_modules; else build_tool "$t"; fi
done
log "toolchain ready in $((SECONDS - start_all))s"
