"""``spec.engine``: the inference engine that runs in each pod and how it is tuned.

``kind: auto`` (the default) lets the planner pick ``native`` or ``vllm`` from what each
engine serves (``planning/engines.py``); ``kind: native`` runs ``deepseek-runtime serve``;
``kind: vllm`` runs ``vllm serve`` with the upstream image; ``kind: triton`` runs
``deepseek-runtime serve --engine triton``.
Tuning fields use vLLM's names (``gpuMemoryUtilization``, ``maxNumSeqs``) because those
are the names operators already search for.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from deepseek_operator.api import defaults
from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.validation import QUANTITY_PATTERN, unique_items

CPU_PATTERN = r"^[0-9]+(\.[0-9]+)?m?$"
"""A CPU quantity: cores (``16``, ``0.5``) or millicores (``500m``). Without it, a DSD
with ``cpu: x1`` passed the apiserver and then every Deployment patch failed (found by
the spec fuzzer, ``e2e/reliability/spec_fuzz.py``)."""

EngineKind = Literal["auto", "native", "vllm", "triton"]


class EnvVar(ApiModel):
    """A literal environment variable for the engine container."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    """Variable name."""
    value: Annotated[str, Field(max_length=4096)] = ""
    """Variable value. Never put secrets here: use ``model.source.secretRef``."""


class KVCacheSpec(ApiModel):
    """Paged KV cache settings."""

    block_size: Literal[8, 16, 32, 64, 128] = defaults.KV_BLOCK_SIZE
    """Tokens per KV cache block."""
    dtype: Literal["auto", "fp8"] = "auto"
    """Element type of the cache: ``auto`` uses the model's dtype (BF16); ``fp8`` halves
    the cache and doubles the tokens it holds."""
    prefix_caching: bool = True
    """Reuse cached blocks of identical prompt prefixes (system prompts, few-shot)."""
    min_sequences: Annotated[int, Field(ge=1, le=4096)] = defaults.MIN_CONCURRENT_SEQUENCES
    """Concurrent full-length sequences (``model.maxModelLen`` tokens each) the cache must
    hold. The planner adds GPUs until this fits."""


class ResourceSpec(ApiModel):
    """CPU and memory for the engine container (GPUs come from the plan)."""

    cpu: Annotated[str, Field(max_length=32, pattern=CPU_PATTERN)] | None = None
    """CPU request and limit, e.g. ``16`` or ``500m``; 4 per GPU when omitted."""
    memory: Annotated[str, Field(max_length=32, pattern=QUANTITY_PATTERN)] | None = None
    """Memory request and limit, e.g. ``256Gi``; sized from the checkpoint when omitted."""


class EngineSpec(ApiModel):
    """The serving engine."""

    kind: EngineKind = "auto"
    """Engine: ``auto`` (native when the native engine can serve the plan, else vLLM; the
    choice and its reason are in ``status.plan``), ``native`` (deepseek-runtime), ``vllm``
    (upstream vLLM image) or ``triton`` (deepseek-runtime fronting a Triton Inference
    Server). An explicit ``native`` that native cannot serve ends ``Planned=False``."""
    image: Annotated[str, Field(max_length=512)] | None = None
    """Container image; when omitted, the pinned default of the engine that serves the
    plan (for ``auto``, the one the planner chose)."""
    args: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)] = Field(
        default_factory=list
    )
    """Extra command-line arguments appended after the ones the operator derives."""
    env: Annotated[list[EnvVar], Field(max_length=64), AfterValidator(unique_items)] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra environment variables for the engine container."""
    port: Annotated[int, Field(ge=1024, le=65535)] = defaults.SERVING_PORT
    """Port of the OpenAI-compatible HTTP API and ``/metrics``."""
    gpu_memory_utilization: Annotated[float, Field(ge=0.1, le=0.99)] = (
        defaults.GPU_MEMORY_UTILIZATION
    )
    """Fraction of each GPU's memory the engine may use for weights, activations and KV."""
    max_num_seqs: Annotated[int, Field(ge=1, le=4096)] = defaults.MAX_NUM_SEQS
    """Most sequences scheduled in one step."""
    max_num_batched_tokens: Annotated[int, Field(ge=256, le=1048576)] = (
        defaults.MAX_NUM_BATCHED_TOKENS
    )
    """Token budget of one step (chunked prefill splits longer prompts)."""
    triton_url: Annotated[str, Field(max_length=253)] | None = Field(
        default=None, alias="tritonURL"
    )
    """For ``kind: triton``: gRPC address (``host:port``) of the Triton Inference Server
    the runtime fronts."""
    kv_cache: KVCacheSpec = Field(default_factory=KVCacheSpec)
    """Paged KV cache settings."""
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    """CPU and memory of the engine container."""
