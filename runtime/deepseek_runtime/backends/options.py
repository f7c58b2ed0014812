"""What each backend needs to build its engine: one frozen options object per backend.

Backends take these, never the server's ``ServerConfig``: ``server.backend_options`` maps
the validated command line onto them, and benchmarks and tests build them directly. The
objects do not validate again; the engine's :class:`~deepseek_runtime.engine.EngineConfig`
and the model runner check what they use when the engine is built.

Defaults live where the value is used: the engine's limits in ``engine.config``, the
native loader's below. The vLLM and Triton options have no defaults, as only the server
builds them (from its own, documented, defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..checkpoint.cpu_kernels import DEFAULT_CPU_KERNELS, CpuKernels
from ..engine.config import (
    DEFAULT_ENABLE_PREFIX_CACHING,
    DEFAULT_MAX_NUM_BATCHED_TOKENS,
    DEFAULT_MAX_NUM_SEQS,
    DEFAULT_MAX_WAITING,
)
from ..engine.kv_sizing import DEFAULT_CPU_KV_CACHE_FRACTION, DEFAULT_GPU_MEMORY_UTILIZATION

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]

DEFAULT_DTYPE: Dtype = "auto"
DEFAULT_DEVICE: Device = "auto"
DEFAULT_BLOCK_SIZE = 16
"""Tokens per KV block: small blocks waste little of a sequence's last block, larger ones
make fewer block-table entries per step; 16 is vLLM's default too."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NativeEngineOptions:
    """How ``backends.native`` builds our engine from a checkpoint directory."""

    backend: ClassVar[str] = "native"

    model_dir: Path
    """Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json)."""
    dtype: Dtype = DEFAULT_DTYPE
    """Weight and activation dtype; ``auto`` is bfloat16 on CUDA and float32 on CPU."""
    device: Device = DEFAULT_DEVICE
    """``auto`` picks CUDA when torch sees a GPU."""
    max_model_len: int | None = None
    """Longest prompt + completion; None: the model's positions or the KV capacity,
    whichever is smaller (a larger value is refused at load)."""
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    """Most sequences in one step."""
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    """Token budget of one step (decode tokens + prefill chunk tokens)."""
    block_size: int = DEFAULT_BLOCK_SIZE
    """KV cache block size in tokens."""
    num_blocks: int | None = None
    """KV cache blocks; None: as many as ``kv_cache_memory_bytes`` holds."""
    kv_cache_memory_bytes: int | None = None
    """KV cache budget when ``num_blocks`` is None; None: sized from memory
    (``gpu_memory_utilization`` on CUDA, ``cpu_kv_cache_fraction`` on CPU; see
    ``engine.kv_sizing``)."""
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    """CUDA: share of the device's memory for weights, peak activations and KV cache."""
    cpu_kv_cache_fraction: float = DEFAULT_CPU_KV_CACHE_FRACTION
    """CPU: share of the RAM available after loading (cgroup-bounded) for the KV cache."""
    enable_prefix_caching: bool = DEFAULT_ENABLE_PREFIX_CACHING
    """Reuse the KV blocks of equal prompt prefixes."""
    max_waiting: int = DEFAULT_MAX_WAITING
    """Most queued requests before new ones are refused (QueueFullError, HTTP 429)."""
    seed: int | None = None
    """Seed of the sampler shared by requests without their own seed."""
    debug_checks: bool = False
    """Let the model runner check every chunk of every step (token ids in the vocabulary,
    block ids in range). Off in serving: the engine validates each request when it
    arrives and the KV manager's block ids are in range by construction."""
    quantization: str = "auto"
    """How linear weights are held: ``auto`` (the checkpoint's own format), ``none``,
    ``int8`` (per output channel), ``int4`` (groups) or ``fp8`` (128x128 blocks); see
    ``checkpoint.quantization``."""
    quantization_group_size: int | None = None
    """Input columns per int4 scale (the CPU kernel takes 32, 64, 128 or 256); None: the
    int4 kernel's default (``kernels.quant.int4.DEFAULT_GROUP_SIZE``, 128)."""
    cpu_kernels: CpuKernels = DEFAULT_CPU_KERNELS
    """fp32 on CPU: ``auto`` / ``packed`` run the linears and routed experts on the native
    CPU kernels (``kernels.cpu``), ``torch`` on torch's GEMMs; see ``checkpoint.cpu_kernels``."""
    tensor_parallel_size: int = 1
    """Tensor-parallel ranks on this node: ``serve`` is rank 0 and spawns the others
    (``backends.tp_group``)."""
    enable_expert_parallel: bool = False
    """Partition the routed experts over the tensor-parallel ranks instead of splitting each."""
    pipeline_parallel_size: int = 1
    """Pipeline stages, each a range of layers (``tensor x pipeline`` ranks in all)."""
    nnodes: int = 1
    """Nodes the group spans; each runs ``tensor x pipeline / nnodes`` ranks."""
    node_rank: int = 0
    """This node's index: 0 is the leader (rank 0, the engine and the API)."""
    master_addr: str = "127.0.0.1"
    """Where the group meets: the leader's address."""
    master_port: int | None = None
    """torch.distributed's port on the leader (the next one carries the liveness link);
    None: a free loopback port (single node only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VLLMEngineOptions:
    """``vllm.AsyncEngineArgs`` in our names (see ``backends.vllm.vllm_engine_args``)."""

    backend: ClassVar[str] = "vllm"

    model_dir: str
    """Checkpoint directory (or anything else vLLM's ``model`` accepts)."""
    served_model_name: str
    """The name vLLM labels its own metrics with."""
    dtype: Dtype
    """Passed as is; vLLM resolves ``auto`` from the checkpoint."""
    max_model_len: int | None
    """None: vLLM derives it from the checkpoint."""
    max_num_seqs: int
    """Most sequences in one vLLM step."""
    max_num_batched_tokens: int
    """Token budget of one vLLM step."""
    block_size: int
    """vLLM's KV block size in tokens."""
    num_blocks: int | None
    """Overrides vLLM's own sizing of the KV cache (``num_gpu_blocks_override``)."""
    kv_cache_memory_bytes: int | None = None
    """vLLM's ``kv_cache_memory_bytes``: an exact KV budget (on CPU, in host RAM)."""
    enable_prefix_caching: bool
    """vLLM's automatic prefix caching."""
    tensor_parallel_size: int
    """GPUs each layer is split across."""
    pipeline_parallel_size: int
    """Stages the layers are split into."""
    enable_expert_parallel: bool
    """Spread MoE experts across the tensor-parallel GPUs instead of splitting each."""
    quantization: str | None
    """None: as the checkpoint says (e.g. ``fp8``)."""
    kv_cache_dtype: str
    """``auto`` (the model dtype) or e.g. ``fp8``."""
    gpu_memory_utilization: float
    """Fraction of each GPU's memory vLLM may take (weights, activations, KV cache)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TritonEngineOptions:
    """Where the remote Triton server is and which local tokenizer goes with it."""

    backend: ClassVar[str] = "triton"

    model_dir: str
    """Directory with the checkpoint's tokenizer files (the weights stay on Triton)."""
    url: str
    """Triton gRPC address, ``host:port``."""
    remote_model: str
    """The model's name on the Triton server."""
    max_model_len: int | None
    """None: ``max_position_embeddings`` from ``config.json`` when there is one."""


BackendOptions = NativeEngineOptions | VLLMEngineOptions | TritonEngineOptions
