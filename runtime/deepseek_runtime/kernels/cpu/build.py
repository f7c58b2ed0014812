"""Compile ``dsr_cpu.cpp`` once per machine and load it as ``torch.ops.dsr_cpu``.

Why compiled here, not shipped as a wheel: the kernels link against the installed torch's
C++ ABI, so the binary must match the torch next to it. Building takes ~10 s with the
system C++ compiler and the headers every torch wheel ships; the shared object is cached
under a key of the source, the torch version and the flags, so each machine (or container
image, which builds it at image build time and ships no compiler) compiles it once, and a
stale binary can never be loaded against a different torch.

The flags target AVX2 + FMA, not ``-march=native``, so an image built on one machine
runs on any x86-64 CPU with AVX2. Anything that stops the build (no compiler, no AVX2,
not x86-64, a compiler error) is reported as a reason string, never raised at import:
:mod:`~deepseek_runtime.checkpoint.cpu_kernels` decides whether that is an error.

Run ``python -m deepseek_runtime.kernels.cpu.build`` to build ahead of time (the images
do); it prints where the library is, or why it could not be built, and exits 1 then.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("dsr_cpu.cpp")
FLAGS = (
    "-O3",
    "-mavx2",
    "-mfma",
    "-fopenmp",  # at::parallel_for is an OpenMP pragma in the headers: serial without it
    "-std=c++20",
    "-shared",
    "-fPIC",
    "-fno-math-errno",
)
CACHE_ENV = "DSR_CPU_KERNEL_CACHE"
"""Directory of built libraries; default ``$XDG_CACHE_HOME/deepseek-runtime/cpu-kernels``."""
COMPILER_ENV = "CXX"
BUILD_TIMEOUT_S = 300.0
SIMD_CAPABILITIES = ("AVX2", "AVX512")
"""What ``torch.backends.cpu.get_cpu_capability()`` reports on CPUs that run AVX2 code."""


@dataclass(frozen=True, slots=True)
class KernelLibrary:
    """The outcome of :func:`load`: a loaded library, or why there is none."""

    path: Path | None
    reason: str
    """``"loaded"`` or what stopped the build, in words an operator can act on."""

    @property
    def loaded(self) -> bool:
        return self.path is not None


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepseek-runtime" / "cpu-kernels"


def _compiler() -> str | None:
    named = os.environ.get(COMPILER_ENV)
    if named:
        return shutil.which(named)
    return shutil.which("c++") or shutil.which("g++")


def _torch_build_flags() -> list[str]:
    from torch.utils.cpp_extension import include_paths  # noqa: PLC0415 (slow import)

    lib_dir = Path(torch.__file__).parent / "lib"
    abi = int(torch.compiled_with_cxx11_abi())
    return [
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *(f"-I{p}" for p in include_paths()),
        f"-L{lib_dir}",
        "-lc10",
        "-ltorch_cpu",
        f"-Wl,-rpath,{lib_dir}",
    ]


def unsupported_reason() -> str | None:
    """Why this machine cannot run the kernels at all (None when it can)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the CPU kernels are x86-64 AVX2 code; this machine is {platform.machine()}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in SIMD_CAPABILITIES:
        return f"the CPU kernels need AVX2 + FMA; torch reports CPU capability {capability}"
    return None


def library_key() -> str:
    """What the binary depends on: the source, the torch it links and the flags."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), " ".join(FLAGS).encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def build(directory: Path | None = None) -> Path:
    """The built library's path, compiling it first when it is not cached.

    Concurrent builders (the ranks of a tensor-parallel group start together) each write
    their own temporary file and rename it into place, so a reader never sees half a file.

    Raises:
        RuntimeError: with the reason the library cannot be built.
    """
    reason = unsupported_reason()
    if reason is not None:
        raise RuntimeError(reason)
    target_dir = directory or cache_dir()
    target = target_dir / f"dsr_cpu-{library_key()}.so"
    if target.is_file():
        return target
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError(
            f"no C++ compiler found (set CXX, or install g++) to build the CPU kernels, and "
            f"no prebuilt {target.name} in {target_dir} (set {CACHE_ENV})"
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".dsr_cpu-", suffix=".so", dir=target_dir)
    os.close(fd)
    try:
        command = [compiler, *FLAGS, str(SOURCE), "-o", tmp_name, *_torch_build_flags()]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-20:])
            raise RuntimeError(f"building the CPU kernels failed ({compiler}):\n{tail}")
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


_lock = threading.Lock()
_loaded: KernelLibrary | None = None


def load() -> KernelLibrary:
    """Build (if needed) and load the library once per process; never raises."""
    global _loaded  # noqa: PLW0603 (one library per process)
    with _lock:
        if _loaded is None:
            try:
                path = build()
                torch.ops.load_library(str(path))  # type: ignore[no-untyped-call]
                _loaded = KernelLibrary(path, "loaded")
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                _loaded = KernelLibrary(None, str(exc))
        return _loaded


def main() -> int:
    library = load()
    if not library.loaded:
        print(f"CPU kernels not built: {library.reason}", file=sys.stderr)
        return 1
    print(library.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
