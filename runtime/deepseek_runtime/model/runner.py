"""The model runner the engine drives: one forward step over a batch of sequence chunks.

Called by the engine's step loop (``deepseek_runtime.engine``). The runner owns the model
weights (DeepSeek MLA + MoE, or a Qwen2 / Llama R1 distill: see
:mod:`deepseek_runtime.model.registry`) and the paged KV cache tensor
``[layers, num_blocks * block_size, row width]`` (MLA latents or GQA keys and values);
the scheduler owns block allocation and
passes each sequence's block table in. A chunk is either part of a prompt (prefill,
possibly starting after tokens already cached: chunked prefill or a prefix-cache hit) or
a single decode token::

    cache slot of position p = block_table[p // block_size] * block_size + p % block_size

:meth:`ModelRunner.execute` writes each new token's cache row into its slot, attends over
positions ``0 .. start_pos + i`` of its own sequence, and returns the logits of each
chunk's last token.

With a :class:`~deepseek_runtime.parallel.groups.ParallelContext` (``parallel=``) the
runner holds one tensor-parallel rank's shard and cache (its heads; the MLA latent whole)
and every rank of the group must call :meth:`execute` with the same chunks, in the same
order: the layers' collectives pair up across ranks. ``None`` is the single process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from deepseek_runtime.checkpoint import compressed_tensors
from deepseek_runtime.checkpoint.config import ConfigError
from deepseek_runtime.checkpoint.cpu_kernels import (
    DEFAULT_CPU_KERNELS,
    CpuKernelDecision,
    decide,
    ineligible_reason,
)
from deepseek_runtime.checkpoint.model_config import ModelConfig, load_model_config
from deepseek_runtime.checkpoint.quantization import (
    LoadQuantization,
    checkpoint_format,
    resolve_quantization,
)
from deepseek_runtime.checkpoint.weights import ResidentBytes, WeightStore
from deepseek_runtime.kernels.cpu import build as cpu_kernel_build
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata, build_metadata
from deepseek_runtime.kernels.quant.int4 import DEFAULT_GROUP_SIZE
from deepseek_runtime.model.decoder import cached_layers
from deepseek_runtime.model.registry import CausalLM, build_model, kv_token_width
from deepseek_runtime.model.resident import resident_bytes
from deepseek_runtime.parallel.groups import ParallelContext

log = logging.getLogger("deepseek_runtime.model.runner")

DEFAULT_KV_CACHE_BYTES = 256 * 1024 * 1024


class ChunkLike(Protocol):
    """What :meth:`ModelRunner.execute` reads of a chunk (structural: the engine's
    ``ScheduledChunk`` and :class:`SeqChunk` both qualify, so no adapter copies them).

    The runner only reads these during ``execute`` and keeps no reference afterwards.
    """

    @property
    def token_ids(self) -> Sequence[int]: ...

    @property
    def start_pos(self) -> int: ...

    @property
    def block_table(self) -> Sequence[int]: ...


@dataclass(frozen=True, slots=True)
class SeqChunk:
    """The new tokens of one sequence in one step (a plain :class:`ChunkLike`).

    Attributes:
        token_ids: tokens to compute now (a prefill chunk, or one decode token).
        start_pos: how many tokens of this sequence are already in the KV cache; the new
            tokens take positions ``start_pos, start_pos + 1, ...``.
        block_table: physical KV block ids of the whole sequence, covering at least
            ``start_pos + len(token_ids)`` tokens.
    """

    token_ids: list[int]
    start_pos: int
    block_table: list[int]


class ModelRunner:
    """Model + paged KV cache; :meth:`execute` runs one batched step."""

    def __init__(
        self,
        config: ModelConfig,
        model: CausalLM,
        *,
        dtype: torch.dtype,
        device: str,
        block_size: int,
        num_blocks: int,
        debug_checks: bool = False,
        parallel: ParallelContext | None = None,
    ) -> None:
        if block_size < 1 or num_blocks < 1:
            raise ValueError("block_size and num_blocks must be >= 1")
        self.debug_checks = debug_checks
        self.quantization = LoadQuantization()
        """How linear weights are held (set by :meth:`from_pretrained`)."""
        self.weight_bytes = ResidentBytes()
        """Resident weight bytes by kind, as loaded (set by :meth:`from_pretrained`)."""
        self.cpu_kernels = CpuKernelDecision(False, "not loaded by from_pretrained")
        """Whether the linears are packed for the native CPU kernels, and why."""
        self.config = config
        self.model = model
        self.dtype = dtype
        self.device = torch.device(device)
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.parallel = parallel
        self.kv_cache = torch.zeros(
            len(model.layers),  # a pipeline stage caches its own layers only
            num_blocks * block_size,
            kv_token_width(config, parallel),
            dtype=dtype,
            device=device,
        )

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        block_size: int = 16,
        num_blocks: int | None = None,
        kv_cache_memory_bytes: int | None = None,
        config_overrides: dict[str, Any] | None = None,
        keep_fp8: bool = False,
        debug_checks: bool = False,
        quantization: str = "auto",
        quantization_group_size: int = DEFAULT_GROUP_SIZE,
        parallel: ParallelContext | None = None,
        cpu_kernels: str = DEFAULT_CPU_KERNELS,
    ) -> ModelRunner:
        """Load a Hugging Face checkpoint and allocate the KV cache.

        The cache holds ``num_blocks`` blocks if given, else as many as fit in
        ``kv_cache_memory_bytes`` (default 256 MiB). ``config_overrides`` replace
        ``config.json`` fields (e.g. the runtime switches ``router_group_mask`` and
        ``yarn_softmax_mscale``). FP8 checkpoints are dequantized to ``dtype`` at load
        unless ``keep_fp8``, which keeps linear weights in FP8 with their block scales
        (less memory; the CPU reference dequantizes on use). ``quantization`` (``auto``,
        ``none``, ``int8``, ``int4``, ``fp8``; int4 in groups of
        ``quantization_group_size`` input columns) says how linear weights are held, as
        :mod:`deepseek_runtime.checkpoint.quantization` describes; ``ConfigError`` when
        the checkpoint or device cannot honour it. ``debug_checks`` scans every chunk of
        every step (see :meth:`execute`). ``parallel`` loads only this tensor-parallel
        rank's shard (dense or DeepSeek FP8-block weights; ``ConfigError`` for int8 /
        int4 / compressed-tensors, which the parallel layers do not shard yet) and
        sizes the cache by this rank's bytes per block, so every rank of a group gets
        the same block count. ``cpu_kernels`` (``auto``, ``packed``, ``torch``) says
        whether dense fp32 CPU linears are panel-packed for the native CPU kernels
        (:mod:`deepseek_runtime.checkpoint.cpu_kernels`); the decision is logged.
        """
        target = _check_device(device)
        config = load_model_config(model_dir, config_overrides)
        stored = checkpoint_format(config.quantization_config)
        spec = resolve_quantization(
            "fp8" if keep_fp8 else quantization, stored, target, quantization_group_size
        )
        if parallel is not None and (spec.method != "none" or spec.decode_stored):
            raise ConfigError(
                f"--quantization {quantization}: tensor-parallel ranks load dense or FP8-block"
                " weights only; use --quantization auto or none"
            )
        compressed = (
            compressed_tensors.parse_quantization_config(config.model_dump())
            if stored == "compressed-tensors"
            else None
        )
        kernels = _decide_cpu_kernels(cpu_kernels, target, dtype, spec, parallel)
        with WeightStore(
            model_dir,
            dtype=dtype,
            fp8_block=config.fp8_block,
            device=target,
            quantization=spec,
            compressed=compressed,
            pack_cpu_kernels=kernels.packed,
        ) as store:
            model = build_model(config, store, parallel)
            resident = store.resident
        per_block = cls.bytes_per_block(config, block_size, dtype, parallel)
        if num_blocks is None:
            budget = (
                DEFAULT_KV_CACHE_BYTES if kv_cache_memory_bytes is None else kv_cache_memory_bytes
            )
            num_blocks = budget // per_block
            if num_blocks < 1:
                raise ValueError(
                    f"kv_cache_memory_bytes={budget} is less than one block ({per_block} bytes)"
                )
        runner = cls(
            config,
            model,
            dtype=dtype,
            device=device,
            block_size=block_size,
            num_blocks=num_blocks,
            debug_checks=debug_checks,
            parallel=parallel,
        )
        runner.quantization, runner.weight_bytes = spec, resident
        runner.cpu_kernels = kernels
        return runner

    @staticmethod
    def bytes_per_block(
        config: ModelConfig,
        block_size: int,
        dtype: torch.dtype,
        parallel: ParallelContext | None = None,
    ) -> int:
        """Cache bytes of one block across all layers (MLA latents or this rank's GQA K/V);
        a pipeline stage counts the busiest stage's layers, so all stages agree."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        width = kv_token_width(config, parallel)
        layers = cached_layers(config.num_hidden_layers, parallel)
        return layers * block_size * width * itemsize

    def kv_bytes_per_block(self) -> int:
        return self.bytes_per_block(self.config, self.block_size, self.dtype, self.parallel)

    def resident_weight_bytes(self) -> int:
        """Weight bytes this process really holds (storage walk; the KV cache excluded)."""
        return resident_bytes(self.model, skip=(self.kv_cache,))

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    def execute(
        self, chunks: Sequence[ChunkLike], hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run one step; returns fp32 logits ``[len(chunks), vocab]`` (last token of each chunk),
        on the runner's device. A pipeline stage after the first takes the previous
        stage's ``hidden``; a stage before the last returns its hidden states ``[T, hidden]``.

        Inputs are trusted on the hot path: the engine validates token ids when a request
        is added, and the KV manager hands out block ids that are in range by
        construction. With ``debug_checks`` every chunk is scanned first and a ValueError
        names an empty chunk, a token id outside the vocabulary, a negative ``start_pos``,
        or a block table that is too short or names a block out of range.
        """
        if not chunks:
            return torch.empty(0, self.config.vocab_size, dtype=torch.float32)
        token_ids, positions, meta, last_rows = self._prepare(chunks)
        cache = self.kv_cache
        return self.model.forward(token_ids, positions, cache, meta, last_rows, hidden=hidden)

    def execute_all_rows(
        self, chunks: Sequence[ChunkLike], full: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`execute`, plus the logits of *every* token of the chunks indexed by
        ``full`` (scoring: prompt logprobs need the prediction at each prompt position).

        Returns ``(last [len(chunks), vocab], [rows [len(chunks[k].token_ids), vocab]
        for k in full])``. One forward pass: the extra rows only widen the LM head's
        input, so :meth:`execute` stays the path of steps that need none.
        """
        if not chunks:
            return torch.empty(0, self.config.vocab_size, dtype=torch.float32), []
        token_ids, positions, meta, last_rows = self._prepare(chunks)
        ends = last_rows.tolist()
        spans = [(ends[k] - len(chunks[k].token_ids) + 1, ends[k] + 1) for k in full]
        extra = [r for lo, hi in spans for r in range(lo, hi)]
        rows = torch.cat([last_rows, torch.tensor(extra, dtype=torch.long, device=self.device)])
        logits = self.model.forward(token_ids, positions, self.kv_cache, meta, rows)
        out, offset = [], len(chunks)
        for lo, hi in spans:
            out.append(logits[offset : offset + hi - lo])
            offset += hi - lo
        return logits[: len(chunks)], out

    def _prepare(
        self, chunks: Sequence[ChunkLike]
    ) -> tuple[torch.Tensor, torch.Tensor, PagedAttentionMetadata, torch.Tensor]:
        """Token ids, positions, attention metadata and the rows whose logits are wanted."""
        bs = self.block_size
        tokens: list[int] = []
        positions: list[int] = []
        last_rows: list[int] = []
        described: list[tuple[int, int, list[int]]] = []
        for i, chunk in enumerate(chunks):
            n = len(chunk.token_ids)
            end = chunk.start_pos + n
            if self.debug_checks:
                self._validate(i, chunk, end)
            tokens.extend(chunk.token_ids)
            positions.extend(range(chunk.start_pos, end))
            last_rows.append(len(tokens) - 1)
            described.append((chunk.start_pos, n, list(chunk.block_table[: (end + bs - 1) // bs])))
        device = self.device
        meta = build_metadata(described, bs, device, native_cpu=self.cpu_kernels.packed)

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        return tensor(tokens), tensor(positions), meta, tensor(last_rows)

    def _validate(self, index: int, chunk: ChunkLike, end: int) -> None:
        if not chunk.token_ids:
            raise ValueError(f"chunk {index}: token_ids is empty")
        if chunk.start_pos < 0:
            raise ValueError(f"chunk {index}: start_pos must be >= 0")
        vocab = self.config.vocab_size
        bad = [t for t in chunk.token_ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(
                f"chunk {index}: token id {bad[0]} outside the vocabulary [0, {vocab})"
            )
        needed = (end + self.block_size - 1) // self.block_size
        if len(chunk.block_table) < needed:
            raise ValueError(
                f"chunk {index}: block_table has {len(chunk.block_table)} blocks, "
                f"{needed} needed for {end} tokens"
            )
        bad_blocks = [b for b in chunk.block_table[:needed] if not 0 <= b < self.num_blocks]
        if bad_blocks:
            raise ValueError(
                f"chunk {index}: block id {bad_blocks[0]} outside [0, {self.num_blocks})"
            )


def _decide_cpu_kernels(
    requested: str,
    device: torch.device,
    dtype: torch.dtype,
    spec: LoadQuantization,
    parallel: ParallelContext | None,
) -> CpuKernelDecision:
    """``--cpu-kernels`` for this load: builds the library only when it would be used."""
    dense = spec.method == "none" and not spec.decode_stored and not spec.keep_stored_fp8
    ineligible = ineligible_reason(
        device, dtype, dense_weights=dense, parallel=parallel is not None
    )
    failure = None
    if ineligible is None and requested != "torch":
        library = cpu_kernel_build.load()
        failure = None if library.loaded else library.reason
    decision = decide(requested, ineligible, failure)
    log.info(
        "cpu kernels",
        extra={"cpu_kernels": "packed" if decision.packed else "torch", "reason": decision.reason},
    )
    return decision


def _check_device(device: str) -> torch.device:
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r}: {exc}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available")
    if target.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only cpu and cuda are supported")
    return target
