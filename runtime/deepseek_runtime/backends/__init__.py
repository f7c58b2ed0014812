"""Engines the server can front: ``native`` (ours), ``vllm`` (in process) and ``triton`` (remote).

Each backend takes its own typed options object (``backends.options``), never the
server's configuration: ``check_available(options)`` runs before the server starts
listening and fails with a message naming the package to install when the backend's
dependency is missing; ``load_model(options)`` builds and starts the engine and returns a
:class:`LoadedModel` (engine + tokenizer). Called by ``server.cli``; the layers below
(engine, model) never import this package, and it never imports the server.
"""

from __future__ import annotations

import importlib
import importlib.util

from .loaded import LoadedModel
from .options import BackendOptions, NativeEngineOptions, TritonEngineOptions, VLLMEngineOptions

__all__ = [
    "BackendOptions",
    "EngineUnavailable",
    "LoadedModel",
    "NativeEngineOptions",
    "TritonEngineOptions",
    "VLLMEngineOptions",
    "check_available",
    "load_model",
    "require_package",
]

_RUNTIME_EXTRA = "pip install 'deepseek-k8s[runtime]'"

# backend -> (module, [(importable module, what to install)])
_BACKENDS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "native": (
        "deepseek_runtime.backends.native",
        [("torch", _RUNTIME_EXTRA), ("safetensors", _RUNTIME_EXTRA)],
    ),
    "vllm": (
        "deepseek_runtime.backends.vllm",
        [("vllm", "pip install 'deepseek-k8s[vllm]' (vLLM needs a CUDA GPU)")],
    ),
    "triton": (
        "deepseek_runtime.backends.triton",
        [("tritonclient.grpc", "pip install 'deepseek-k8s[triton]' (tritonclient[grpc])")],
    ),
}


class EngineUnavailable(RuntimeError):  # noqa: N818 (reads as a state)
    """The chosen engine's package (or another one that was asked for) is not installed."""


def require_package(what: str, module: str, hint: str) -> None:
    """Raise EngineUnavailable saying that ``what`` needs ``module`` (install: ``hint``)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise EngineUnavailable(
            f"{what} needs the Python package {module!r}, which is not installed: {hint}"
        )


def check_available(options: BackendOptions) -> None:
    """Raise EngineUnavailable saying what to install when the backend cannot be used."""
    for module, hint in _BACKENDS[options.backend][1]:
        require_package(f"--engine {options.backend}", module, hint)


async def load_model(options: BackendOptions) -> LoadedModel:
    """Build and start the engine ``options`` describe (weights load off the event loop)."""
    module = importlib.import_module(_BACKENDS[options.backend][0])
    loaded: LoadedModel = await module.load(options)
    return loaded
