"""The runtime's import contracts in .importlinter hold, and they would catch a breach.

The layers ``server > backends > engine > model > parallel > checkpoint > kernels``, "the engine
never imports the model" and "kv imports nothing of ours" are checked on the real tree;
then on a copy of the package with one forbidden import added per contract, where each
must report BROKEN (so a contract that names a wrong module cannot pass silently).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runtime" / "deepseek_runtime"

# contract id -> (file in the package, a line that breaks that contract)
BREACHES = {
    "runtime-layers": ("backends/options.py", "from deepseek_runtime.server import config"),
    "runtime-engine-model-free": ("engine/config.py", "import deepseek_runtime.model.runner"),
    "runtime-kv-standalone": ("kv/hashing.py", "import deepseek_runtime.engine.api"),
}


def lint_imports(config: Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    command = str(exe) if exe.exists() else shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed")
    proc = subprocess.run(
        [command, str(config), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return proc.stdout + proc.stderr


def runtime_contracts() -> configparser.ConfigParser:
    """.importlinter with only the ``runtime-*`` contracts and only our runtime package."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    for section in parser.sections():
        if section.startswith("importlinter:contract:") and not section.startswith(
            "importlinter:contract:runtime-"
        ):
            parser.remove_section(section)
    del parser["importlinter"]["root_packages"]
    parser["importlinter"]["root_package"] = "deepseek_runtime"
    return parser


def contract_names(parser: configparser.ConfigParser) -> dict[str, str]:
    prefix = "importlinter:contract:"
    return {s[len(prefix) :]: parser[s]["name"] for s in parser.sections() if s.startswith(prefix)}


def test_runtime_contracts_are_declared_and_kept(tmp_path: Path) -> None:
    parser = runtime_contracts()
    names = contract_names(parser)
    assert set(BREACHES) <= set(names)
    layers = parser["importlinter:contract:runtime-layers"]["layers"].split()
    assert layers == [
        f"deepseek_runtime.{layer}"
        for layer in ("server", "backends", "engine", "model", "parallel", "checkpoint", "kernels")
    ]
    config = tmp_path / "importlinter.ini"
    with config.open("w") as fh:
        parser.write(fh)
    out = lint_imports(config, ROOT)
    for name in names.values():
        assert f"{name} KEPT" in out, out


def test_each_runtime_contract_catches_a_forbidden_import(tmp_path: Path) -> None:
    copy = tmp_path / "deepseek_runtime"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for relative, line in BREACHES.values():
        target = copy / relative
        target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    parser = runtime_contracts()
    config = tmp_path / "importlinter.ini"
    with config.open("w") as fh:
        parser.write(fh)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the copy shadows the installed one
    out = lint_imports(config, tmp_path, env)
    names = contract_names(parser)
    for contract in BREACHES:
        assert f"{names[contract]} BROKEN" in out, out
