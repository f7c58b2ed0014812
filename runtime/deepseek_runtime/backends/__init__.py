"""Engines the server can front: ``native`` (ours), ``vllm`` (in process) and ``triton`` (remote).

``check_available(config)`` runs before the server starts listening and fails with a
message naming the package to install when an engine's dependency is missing;
``load_model(config)`` builds the engine and the tokenizer and returns a
:class:`~deepseek_runtime.server.state.LoadedModel`. Called by ``server.cli``.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..server.config import ServerConfig
from ..server.state import LoadedModel

_MODULES = {
    "native": "deepseek_runtime.backends.native",
    "vllm": "deepseek_runtime.backends.vllm",
    "triton": "deepseek_runtime.backends.triton",
}

# engine -> (importable module, what to install)
_REQUIREMENTS = {
    "native": [
        ("torch", "pip install 'deepseek-k8s[runtime]'"),
        ("safetensors", "pip install 'deepseek-k8s[runtime]'"),
    ],
    "vllm": [("vllm", "pip install 'deepseek-k8s[vllm]' (vLLM needs a CUDA GPU)")],
    "triton": [("tritonclient.grpc", "pip install 'deepseek-k8s[triton]' (tritonclient[grpc])")],
}


class EngineUnavailable(RuntimeError):  # noqa: N818 (reads as a state)
    """The chosen engine's package is not installed."""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_available(config: ServerConfig) -> None:
    """Raise EngineUnavailable saying what to install when the engine cannot be used."""
    needs = [(f"--engine {config.engine}", m, h) for m, h in _REQUIREMENTS[config.engine]]
    if config.grpc_port is not None:
        needs.append(
            (
                "--grpc-port",
                "tritonclient.grpc",
                "pip install 'tritonclient[grpc]' (the KServe v2 gRPC face uses its protos)",
            )
        )
    for what, module, hint in needs:
        if not _importable(module):
            raise EngineUnavailable(
                f"{what} needs the Python package {module!r}, which is not installed: {hint}"
            )


async def load_model(config: ServerConfig) -> LoadedModel:
    module = importlib.import_module(_MODULES[config.engine])
    loaded: LoadedModel = await module.load(config)
    return loaded
