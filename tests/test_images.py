"""The container build files in images/: multi-stage, pinned, non-root, labelled, consistent.

hadolint is not available here, so this reads the Containerfiles the way a reviewer would.
Building and running the images is ``make images`` (images/build-local.sh and
images/test_built_images.py); CI builds and pushes them (.github/workflows/images.yml).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from deepseek_operator.api.defaults import NATIVE_IMAGE

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
FILES = {
    "operator": ("deepseek-operator", "requirements-operator.txt"),
    "runtime-cpu": ("deepseek-runtime", "requirements-runtime.txt"),
    "runtime-cuda": ("deepseek-runtime", "requirements-runtime.txt"),
}
OCI_LABELS = {"title", "description", "version", "revision", "created", "source", "licenses"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Containerfile:
    args: dict[str, str]
    """Global ARG defaults (before the first FROM)."""
    stages: list[Stage]


def parse(path: Path) -> Containerfile:
    """Instructions with continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            stages.append(Stage(rest.split()[0]))
        elif not stages and op == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((op, rest.strip()))
    return Containerfile(args, stages)


def resolve(ref: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)


@pytest.mark.parametrize("name", sorted(FILES))
def test_multi_stage_with_a_pinned_base(name: str) -> None:
    cf = parse(IMAGES / f"{name}.Containerfile")
    assert len(cf.stages) >= 2, "build and runtime stages"
    bases = {resolve(s.base, cf.args) for s in cf.stages if not s.base.startswith("build")}
    for base in bases:
        assert ":latest" not in base
        tag = base.split("@")[0].rsplit(":", 1)[1]
        assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{base}: tag is not an exact version"
        if "python" in base:
            assert re.search(r"@sha256:[0-9a-f]{64}$", base), f"{base}: not pinned by digest"
    assert cf.stages[-1].base == cf.stages[0].base, "the venv runs on the Python it was built on"


@pytest.mark.parametrize("name", sorted(FILES))
def test_final_stage_is_labelled_non_root_with_the_entrypoint(name: str) -> None:
    final = parse(IMAGES / f"{name}.Containerfile").stages[-1]
    ops = dict(final.instructions)
    labels = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", ops["LABEL"]))
    assert labels >= OCI_LABELS
    user = ops["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert ops["ENTRYPOINT"] == f'["{FILES[name][0]}"]'
    assert any(
        op == "COPY" and arg.startswith("--from=build /opt/venv") for op, arg in final.instructions
    )


@pytest.mark.parametrize("name", sorted(FILES))
def test_copied_paths_exist_and_pass_the_ignore_file(name: str) -> None:
    lines = (IMAGES / "build.containerignore").read_text().splitlines()
    kept = [line[1:] for line in lines if line.startswith("!")]
    for op, arg in parse(IMAGES / f"{name}.Containerfile").stages[0].instructions:
        if op != "COPY" or arg.startswith("--from"):
            continue
        for src in arg.split()[:-1]:
            assert (ROOT / src).exists(), src
            probe = f"{src}/x.py" if (ROOT / src).is_dir() else src
            assert any(fnmatch(probe, pattern) for pattern in kept), f"{src} is ignored"


@pytest.mark.parametrize("lock", ["requirements-operator.txt", "requirements-runtime.txt"])
def test_lock_pins_every_dependency(lock: str) -> None:
    pinned = {
        re.split(r"[=; ]", line, maxsplit=1)[0].lower()
        for line in (IMAGES / lock).read_text().splitlines()
        if line and not line.startswith((" ", "#"))
    }
    wanted = list(PROJECT["dependencies"])
    if lock == "requirements-runtime.txt":
        wanted += PROJECT["optional-dependencies"]["runtime"]
    for req in wanted:
        name = re.split(r"[<>=\[ ]", req, maxsplit=1)[0].lower()
        assert name in pinned, (
            f"{name} missing from images/{lock}: regenerate it (images/README.md)"
        )


def test_images_are_tagged_with_the_project_version() -> None:
    version = PROJECT["version"]
    chart = yaml.safe_load((ROOT / "charts/deepseek-operator/Chart.yaml").read_text())
    assert chart["appVersion"] == version
    expected_runtime = f"ghcr.io/deepseek-k8s/deepseek-runtime:{version}"
    assert expected_runtime == NATIVE_IMAGE
    for name in FILES:
        args = parse(IMAGES / f"{name}.Containerfile").stages[-1].instructions
        assert ("ARG", f"VERSION={version}") in args


def test_parser_reads_continuations_and_global_args(tmp_path: Path) -> None:
    f = tmp_path / "x.Containerfile"
    f.write_text("# c\nARG B=img:1.2.3\nFROM ${B} AS build\nRUN a \\\n && b\nFROM ${B}\nUSER 1\n")
    cf = parse(f)
    assert cf.args == {"B": "img:1.2.3"}
    assert [s.base for s in cf.stages] == ["${B}", "${B}"]
    assert cf.stages[0].instructions == [("RUN", "a   && b")]
    assert resolve(cf.stages[1].base, cf.args) == "img:1.2.3"
