"""Run the two GitOps health checks on a DeepSeekDeployment: kstatus and the Argo CD Lua.

- :func:`kstatus` runs the checker built from ``sigs.k8s.io/cli-utils`` (wrapper module
  ``e2e/toolchain/kstatus``, binary in ``$DSK_CACHE/bin/kstatus-<CLI_UTILS_VERSION>/``).
- :func:`argo_health` runs ``manifests/gitops/deepseekdeployment-health.lua`` under Debian's
  ``lua5.4`` the way Argo CD does: the object is the global ``obj`` and the script returns
  ``{status, message}``.

:data:`ARGO_FOR_KSTATUS` is the agreement the tests hold both to.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

from e2e.devcluster.toolchain import BUILD_SCRIPT, cache_dir, read_versions

ROOT = Path(__file__).resolve().parents[2]
LUA_SCRIPT = ROOT / "manifests" / "gitops" / "deepseekdeployment-health.lua"
LUA_BIN = Path("/usr/bin/lua5.4")

ARGO_FOR_KSTATUS = {
    "Current": "Healthy",
    "InProgress": "Progressing",
    "Failed": "Degraded",
    "Terminating": "Progressing",  # Argo CD shows a deleting resource as Progressing
}
"""The Argo CD health status that means the same as each kstatus status."""


def kstatus_binary() -> Path:
    """The pinned kstatus checker, built by ``build.sh kstatus`` when missing."""
    version = read_versions()["CLI_UTILS_VERSION"]
    path = cache_dir() / "bin" / f"kstatus-{version}" / "kstatus"
    if not path.is_file():
        subprocess.run(["bash", str(BUILD_SCRIPT), "kstatus"], check=True)
    return path


def kstatus(binary: Path, obj_or_file: dict[str, Any] | Path) -> tuple[str, str]:
    """(status, message) that cli-utils' ``status.Compute`` gives one object."""
    if isinstance(obj_or_file, Path):
        args, stdin = [str(obj_or_file)], None
    else:
        args, stdin = ["-"], json.dumps(obj_or_file)
    out = subprocess.run(
        [str(binary), "-o", "json", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    results = json.loads(out.stdout)
    if len(results) != 1:
        raise ValueError(f"expected one object, kstatus reported {len(results)}")
    return str(results[0]["status"]), str(results[0]["message"])


def lua_string(text: str) -> str:
    """A double-quoted Lua string: quote, backslash and control bytes as decimal escapes."""
    out = []
    for byte in text.encode("utf-8"):
        if byte < 0x20 or byte in (0x22, 0x5C, 0x7F):
            out.append(f"\\{byte:03d}")
        else:
            out.append(chr(byte) if byte < 0x80 else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def to_lua(value: Any) -> str:
    """A Lua literal for JSON-shaped data (what Argo CD hands its health scripts)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not representable in JSON: {value}")
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        items = (f"[{lua_string(str(k))}] = {to_lua(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot express {type(value).__name__} in Lua")


def argo_health(obj: dict[str, Any], script: Path = LUA_SCRIPT) -> tuple[str, str]:
    """(status, message) the Argo CD health script returns for one object."""
    program = (
        f"obj = {to_lua(obj)}\n"
        f"local hs = dofile({lua_string(str(script))})\n"
        'io.write(hs.status, "\\t", hs.message or "")\n'
    )
    out = subprocess.run(
        [str(LUA_BIN), "-"], input=program, capture_output=True, text=True, check=True, timeout=30
    )
    status, _, message = out.stdout.partition("\t")
    return status, message
