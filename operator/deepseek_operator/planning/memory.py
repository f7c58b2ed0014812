"""Memory model: bytes of weights, KV cache and overhead on each GPU of a replica.

::

    usable = GPU memory × gpuMemoryUtilization
    usable = weights/GPU + runtime overhead + activations + KV cache/GPU
                                                           └─ must hold maxModelLen ×
                                                              minSequences tokens

The runtime sizes its cache by the same rule (``deepseek_runtime.engine.kv_sizing``),
with the weights and activations measured instead of estimated.

Weights: linear weights at the width deepseek-runtime holds them in (see
:func:`linear_bytes_per_param`); embeddings, the LM head, MoE routers and MLA's
``kv_b_proj`` stay bf16 in every format, as in the runtime. Attention and dense MLP are
sliced over the tensor degree; routed experts over the expert degree when expert
parallelism is on (else sliced like the rest); layers over the pipeline stages, the largest
stage (``ceil(layers / pipeline)``) bounding every GPU.

Pure; called by the planner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from deepseek_operator.planning.architecture import ModelArchitecture

WeightFormat = Literal["bf16", "fp8", "int8", "int4"]
GIB: Final = 1024**3
MIB: Final = 1024**2

Device = Literal["cuda", "cpu"]
INT4_GROUP_SIZE: Final = 128
"""Input columns per int4 scale (the runtime's ``--quantization-group-size`` default)."""
FP8_BLOCK: Final = 128
COMPUTE_DTYPE_BYTES: Final = 2  # bf16: activations, and the int8/int4 scales


def linear_bytes_per_param(fmt: WeightFormat, in_features: int, device: Device = "cuda") -> float:
    """Resident bytes per linear weight parameter, as ``deepseek-runtime`` holds it.

    * bf16: 2 bytes.
    * fp8: 1 byte plus one fp32 scale per 128×128 block (DeepSeek's block format).
    * int8 (W8A16): 1 byte plus one bf16 scale per output row, i.e. ``2 / in_features``.
    * int4 (W4A16): ½ byte plus, per group of 128 input columns, a bf16 scale; on CPU the
      packed matmul stores (scale, zero) pairs, so twice that. GPUs store scales only.

    ``tests/contract/test_planner_weight_bytes.py`` checks these against the bytes the
    runtime really holds after loading a scaled-down catalog model.
    """
    if fmt == "bf16":
        return 2.0
    if fmt == "fp8":
        return 1.0 + 4 / (FP8_BLOCK * FP8_BLOCK)
    if fmt == "int8":
        return 1.0 + COMPUTE_DTYPE_BYTES / in_features
    per_group = COMPUTE_DTYPE_BYTES * (2 if device == "cpu" else 1)
    return 0.5 + per_group / INT4_GROUP_SIZE


RUNTIME_OVERHEAD_BYTES: Final = 2 * GIB  # CUDA context, NCCL buffers, CUDA graphs
HIDDEN_BUFFERS: Final = 8
"""Hidden-sized bf16 buffers live per batched token at the step's peak (residual, norm
output, attention projections and output)."""
MLP_BUFFERS: Final = 3
"""MLP-intermediate-sized bf16 buffers per batched token (gate|up output, activation)."""


@dataclass(frozen=True, slots=True)
class Sharding:
    """Degrees of one replica."""

    tensor: int
    pipeline: int
    expert: int
    data: int = 1

    @property
    def gpus(self) -> int:
        """GPUs in one replica."""
        return self.tensor * self.pipeline * self.data


@dataclass(frozen=True, slots=True)
class GpuMemory:
    """Memory use of the busiest GPU of a replica, in bytes."""

    usable: int
    weights: int
    overhead: int
    kv_bytes_per_token: int

    @property
    def kv_budget(self) -> int:
        """Bytes left for the KV cache (negative when weights alone do not fit)."""
        return self.usable - self.weights - self.overhead

    @property
    def max_tokens(self) -> int:
        """Tokens the KV cache of the replica holds."""
        return max(0, self.kv_budget) // self.kv_bytes_per_token if self.kv_bytes_per_token else 0


def checkpoint_bytes(arch: ModelArchitecture, fmt: WeightFormat, device: Device = "cuda") -> int:
    """Resident bytes of all weights in ``fmt`` (``device``: whose int4 layout to count).

    Linear weights take :func:`linear_bytes_per_param` with ``in_features`` = the hidden
    size (most linears read the hidden state; the per-row int8 scale is 0.03 % of a
    DeepSeek-V3 weight either way); embeddings and :attr:`unquantized_params` stay bf16.
    """
    width = linear_bytes_per_param(fmt, arch.hidden_size, device)
    kept = arch.embedding_params + arch.unquantized_params
    return int((arch.total_params - kept) * width + kept * COMPUTE_DTYPE_BYTES)


def weight_bytes_per_gpu(arch: ModelArchitecture, fmt: WeightFormat, s: Sharding) -> int:
    """Weight bytes on the busiest GPU of a replica sharded as ``s``."""
    width = linear_bytes_per_param(fmt, arch.hidden_size)
    stage_share = -(-arch.num_layers // s.pipeline) / arch.num_layers
    quantized_dense = arch.dense_params - arch.unquantized_params
    dense = (quantized_dense * width + arch.unquantized_params * 2) * stage_share / s.tensor
    expert_ranks = s.expert if s.expert > 1 else s.tensor
    experts = arch.expert_params * width * stage_share / expert_ranks
    # Vocabulary-parallel embedding and LM head: both on one stage when pipeline == 1.
    embed_share = 1.0 if s.pipeline == 1 else 0.5
    embeddings = arch.embedding_params * 2 * embed_share / s.tensor
    return int(dense + experts + embeddings)


def kv_bytes_per_token(arch: ModelArchitecture, s: Sharding, kv_dtype_bytes: int) -> int:
    """KV cache bytes one GPU stores per token (its pipeline stage's layers)."""
    layers = -(-arch.num_layers // s.pipeline)
    return arch.kv_elements_per_token_layer(s.tensor) * layers * kv_dtype_bytes


def activation_bytes(
    arch: ModelArchitecture, batched_tokens: int, max_seqs: int, tensor: int = 1
) -> int:
    """Peak activation bytes per GPU: the batched tokens' hidden-sized buffers and this
    rank's slice of the widest MLP intermediate, plus fp32 logits.

    What the runtime's max-size dummy batch measures (``backends.kv_profile``);
    ``tests/contract/test_planner_kv_tokens.py`` holds the two within 10 % of tokens.
    """
    width = HIDDEN_BUFFERS * arch.hidden_size + MLP_BUFFERS * arch.mlp_width // tensor
    logits = max_seqs * arch.vocab_size * 4
    return batched_tokens * width * COMPUTE_DTYPE_BYTES + logits


def gpu_memory(
    arch: ModelArchitecture,
    fmt: WeightFormat,
    s: Sharding,
    *,
    gpu_memory_bytes: int,
    utilization: float,
    kv_dtype_bytes: int,
    batched_tokens: int,
    max_seqs: int,
) -> GpuMemory:
    """Memory use of the busiest GPU of a replica."""
    return GpuMemory(
        usable=int(gpu_memory_bytes * utilization),
        weights=weight_bytes_per_gpu(arch, fmt, s),
        overhead=RUNTIME_OVERHEAD_BYTES
        + activation_bytes(arch, batched_tokens, max_seqs, s.tensor),
        kv_bytes_per_token=kv_bytes_per_token(arch, s, kv_dtype_bytes),
    )


def human_bytes(n: float) -> str:
    """``1.3 TiB``, ``84.1 GiB``, ``512 MiB``."""
    for unit, size in (("TiB", 1024**4), ("GiB", GIB), ("MiB", MIB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
