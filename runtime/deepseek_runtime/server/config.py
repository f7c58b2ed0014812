"""Settings of ``deepseek-runtime serve``, validated once at start-up.

Every field is a command-line option (``--max-num-seqs``) and an environment variable
(``DSR_MAX_NUM_SEQS``) so that the pods the operator renders can be configured either way;
the command line wins over the environment, which wins over the default. Used by
``server.cli`` (parsing), ``server.app`` (limits) and ``server.backend_options`` (which
maps the engine fields onto the chosen backend's options). Engine defaults are not
repeated here: they are the engine's and the native backend's own constants.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..backends.options import DEFAULT_BLOCK_SIZE, DEFAULT_DEVICE, DEFAULT_DTYPE, Device, Dtype
from ..checkpoint.cpu_kernels import DEFAULT_CPU_KERNELS, CpuKernels
from ..engine.config import (
    DEFAULT_ENABLE_PREFIX_CACHING,
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    DEFAULT_MAX_NUM_SEQS,
    DEFAULT_MAX_WAITING,
)
from ..engine.kv_sizing import DEFAULT_CPU_KV_CACHE_FRACTION, DEFAULT_GPU_MEMORY_UTILIZATION

ENV_PREFIX = "DSR_"
LWS_DEFAULTS = {
    "nnodes": "LWS_GROUP_SIZE",
    "node_rank": "LWS_WORKER_INDEX",
    "master_addr": "LWS_LEADER_ADDRESS",
}
"""Fields whose default comes from the LeaderWorkerSet's environment (after ``DSR_*``)."""
MULTI_NODE_MASTER_PORT = 29500


class ServerConfig(BaseModel):
    """All options of the server; the field description is the ``--help`` text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="checkpoint directory (config.json, safetensors, tokenizer)")
    served_model_name: str | None = Field(
        None, description="model name clients use (default: the directory's name)"
    )
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    grpc_port: int | None = Field(
        None, ge=0, le=65535, description="KServe v2 gRPC port (off unless set)"
    )
    engine: Literal["native", "vllm", "triton"] = Field("native", description="inference engine")
    dtype: Dtype = Field(
        DEFAULT_DTYPE,
        description="weight/activation dtype (auto: float32 on CPU, bfloat16 on GPU)",
    )
    device: Device = Field(DEFAULT_DEVICE, description="device for the engine")
    max_model_len: int | None = Field(None, ge=1, description="longest prompt + completion")
    max_num_seqs: int = Field(DEFAULT_MAX_NUM_SEQS, ge=1, description="most sequences in one batch")
    max_num_batched_tokens: int = Field(
        DEFAULT_MAX_NUM_BATCHED_TOKENS, ge=1, description="token budget of one step"
    )
    block_size: int = Field(DEFAULT_BLOCK_SIZE, ge=1, description="KV cache block size in tokens")
    num_blocks: int | None = Field(None, ge=1, description="KV cache blocks (default: sized)")
    kv_cache_memory_bytes: int | None = Field(
        None, ge=1, description="KV cache bytes (per rank; default: sized from memory)"
    )
    enable_prefix_caching: bool = Field(
        DEFAULT_ENABLE_PREFIX_CACHING, description="reuse cached prompt prefixes"
    )
    max_waiting: int = Field(
        DEFAULT_MAX_WAITING, ge=1, description="waiting-queue bound; beyond it: 429"
    )
    debug_checks: bool = Field(
        False, description="native engine: check every chunk of every model step (slow)"
    )
    max_n: int = Field(16, ge=1, description="largest n (choices per request)")
    max_body_bytes: int = Field(4 << 20, ge=1024, description="largest request body (else 413)")
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="largest request line + headers (else 431, closed)"
    )
    header_timeout: float = Field(
        10.0, gt=0, description="seconds for a request's headers to arrive (else 408, closed)"
    )
    body_timeout: float = Field(
        60.0, gt=0, description="seconds for a request's body to arrive (else 408, closed)"
    )
    send_timeout: float = Field(
        30.0, gt=0, description="seconds a response waits on a client not reading (else cut)"
    )
    max_inflight_requests: int = Field(
        512, ge=1, description="API requests in the server at once; beyond it: 503"
    )
    retry_after_seconds: int = Field(1, ge=1, description="Retry-After sent with 429/503")
    drain_timeout: float = Field(
        30.0, ge=0, description="seconds in-flight requests get on SIGTERM"
    )
    reasoning_parser: Literal["deepseek_r1"] | None = Field(
        None, description="split <think>...</think> into reasoning_content (R1, distills)"
    )
    tool_call_parser: Literal["deepseek_v3"] | None = Field(
        None, description="parse DeepSeek tool-call tokens into tool_calls (enables tools)"
    )
    # security
    api_keys_file: Path | None = Field(None, description="file with one API key per line")
    api_keys: str | None = Field(None, description="comma-separated API keys (prefer the file)")
    rate_limit_rps: float | None = Field(
        None, gt=0, description="requests/s per principal (unless its roles set one)"
    )
    rate_limit_tpm: int | None = Field(
        None, gt=0, description="tokens/min per principal (unless its roles set one)"
    )
    content_filter: Path | None = Field(None, description="content policy file (YAML or JSON)")
    audit_log: str | None = Field(None, description="audit log path ('-' for stdout)")
    log_prompts: bool = Field(
        False, description="put prompts in the audit log, PII-redacted (sensitive: see docs)"
    )
    jwt_jwks: str | None = Field(
        None, description="JWKS file or http(s) URL: accept bearer JWTs signed by its keys"
    )
    jwt_issuer: str | None = Field(None, description="required JWT iss (with --jwt-jwks)")
    jwt_audience: str | None = Field(None, description="required JWT aud (with --jwt-jwks)")
    jwt_leeway_seconds: float = Field(
        30.0, ge=0, le=300, description="clock skew allowed on JWT exp/nbf/iat"
    )
    jwt_jwks_refresh_seconds: float = Field(
        300.0, gt=0, description="re-fetch a JWKS URL this often"
    )
    jwt_jwks_min_refetch_seconds: float = Field(
        10.0, ge=0, description="at most one JWKS re-read for an unknown kid per this long"
    )
    auth_roles: Path | None = Field(
        None, description="principals and roles file (YAML/JSON, hot-reloaded)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    # parallelism (native: serve spawns and supervises the ranks; vLLM: passed through)
    tensor_parallel_size: int = Field(1, ge=1, description="tensor-parallel ranks per layer")
    pipeline_parallel_size: int = Field(1, ge=1, description="pipeline stages")
    enable_expert_parallel: bool = Field(
        False, description="spread routed experts over the tensor-parallel ranks"
    )
    nnodes: int = Field(
        1, ge=1, description="nodes of one serving group (default: $LWS_GROUP_SIZE, else 1)"
    )
    node_rank: int = Field(
        0,
        ge=0,
        description="this node's index; 0 serves the API, the others health only "
        "(default: $LWS_WORKER_INDEX, else 0)",
    )
    master_addr: str = Field(
        "127.0.0.1",
        description="node 0's address, where the group meets (default: $LWS_LEADER_ADDRESS)",
    )
    master_port: int | None = Field(
        None,
        ge=1,
        le=65534,
        description="node 0's torch.distributed port; the next port carries the nodes' "
        "liveness link (default: 29500 with --nnodes > 1, else a free port)",
    )
    quantization: str | None = Field(
        None,
        description="weights in memory: auto (the checkpoint's own, the default), none, "
        "int8, int4 or fp8; --engine vllm takes its own method names too",
    )
    quantization_group_size: int | None = Field(
        None, ge=1, description="native --quantization int4: input columns per scale (128)"
    )
    kv_cache_dtype: str = Field(
        "auto", description="KV cache dtype: auto (the model's); --engine vllm also fp8"
    )
    gpu_memory_utilization: float = Field(
        DEFAULT_GPU_MEMORY_UTILIZATION,
        gt=0,
        le=1,
        description="fraction of GPU memory for weights, activations and KV cache (the "
        "KV cache gets what a max-size dummy batch leaves)",
    )
    cpu_kv_cache_fraction: float = Field(
        DEFAULT_CPU_KV_CACHE_FRACTION,
        gt=0,
        le=1,
        description="native on CPU: fraction of the RAM left after loading (within the pod's "
        "memory limit) for the KV cache, unless --kv-cache-memory-bytes or --num-blocks",
    )
    cpu_kernels: CpuKernels = Field(
        DEFAULT_CPU_KERNELS,
        description="native fp32 on CPU: auto (the native AVX2 kernels when they build here, "
        "else torch's, with the reason logged), packed (the native kernels or exit 2) or torch",
    )
    # Triton engine
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address (host:port)")
    triton_model: str | None = Field(None, description="model name on Triton (default: served)")

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        if self.num_blocks is not None and self.kv_cache_memory_bytes is not None:
            raise ValueError("set at most one of num_blocks and kv_cache_memory_bytes")
        if self.cpu_kernels == "packed" and self.engine != "native":
            raise ValueError(f"--cpu-kernels packed is the native engine's, not {self.engine}'s")
        jwt = (self.jwt_jwks, self.jwt_issuer, self.jwt_audience)
        if any(v is not None for v in jwt) and any(v is None for v in jwt):
            raise ValueError("set --jwt-jwks, --jwt-issuer and --jwt-audience together")
        return self

    @property
    def group_master_port(self) -> int | None:
        """``master_port``, or the multi-node default (None: a free port, one node)."""
        if self.master_port is None and self.nnodes > 1:
            return MULTI_NODE_MASTER_PORT
        return self.master_port

    @property
    def model_name(self) -> str:
        """The name clients put in ``model``."""
        return self.served_model_name or Path(self.model).resolve().name


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field; defaults stay ``None`` so the environment can fill them."""
    for name, info in ServerConfig.model_fields.items():
        env = ENV_PREFIX + name.upper()
        help_text = f"{info.description} [env {env}]"
        if info.annotation is bool:
            parser.add_argument(
                _option(name), action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(_option(name), default=None, help=help_text)


def config_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> ServerConfig:
    """Merge command line > environment > defaults; ValueError naming the bad option."""
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name in ServerConfig.model_fields:
        value = getattr(args, name, None)
        if value is None:
            value = environ.get(ENV_PREFIX + name.upper())
            if value in (None, "") and name in LWS_DEFAULTS:
                value = environ.get(LWS_DEFAULTS[name])
            if value == "":
                value = None
        if value is not None:
            values[name] = value
    try:
        return ServerConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_option(str(err['loc'][0])) if err['loc'] else 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(problems) from None
