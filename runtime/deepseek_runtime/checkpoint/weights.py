"""Tensor access to a Hugging Face safetensors checkpoint (single file or sharded).

Called by the model layers' ``load`` methods through :class:`WeightStore`. Finds tensors
through ``model.safetensors.index.json`` when present (else every ``*.safetensors`` file),
dequantizes FP8 e4m3 weights that carry a ``<name>_scale_inv`` block scale, casts to the
requested dtype, and checks shapes. Linear weights (:meth:`WeightStore.get_linear`) are
held as :mod:`~deepseek_runtime.checkpoint.quantization` says: dense, FP8 blocks, int8 or
int4 (quantized at load), or a compressed-tensors checkpoint's own format; the store
counts the bytes it hands out (:attr:`WeightStore.resident`). A missing tensor or a
wrong shape raises :class:`CheckpointError` naming the tensor.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from deepseek_runtime.checkpoint import compressed_tensors as ct
from deepseek_runtime.checkpoint.quantization import (
    LoadQuantization,
    quantize_linear,
    resident_bytes,
)
from deepseek_runtime.kernels.cpu.packed import PackedWeight
from deepseek_runtime.kernels.fp8 import FP8_DTYPE, Fp8Weight, dequantize_fp8_blocks
from deepseek_runtime.kernels.linear import Weight

INDEX_FILE = "model.safetensors.index.json"
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class CheckpointError(ValueError):
    """The checkpoint's files do not hold what the config says they should."""


@dataclass
class ResidentBytes:
    """Bytes of the weights a store handed out, by kind (for memory checks and metrics).

    ``linear_bf16_equivalent`` is what the same linear weights would take in bf16, so
    ``linear / linear_bf16_equivalent`` is the quantization's memory ratio.
    """

    linear: int = 0
    linear_bf16_equivalent: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.linear + self.other


class WeightStore:
    """Read-only, name-addressed view of a checkpoint's tensors."""

    def __init__(
        self,
        model_dir: str | Path,
        dtype: torch.dtype = torch.float32,
        *,
        fp8_block: tuple[int, int] = (128, 128),
        keep_fp8: bool = False,
        device: torch.device | str = "cpu",
        quantization: LoadQuantization | None = None,
        compressed: ct.CompressedTensorsConfig | None = None,
        pack_cpu_kernels: bool = False,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.pack_cpu_kernels = pack_cpu_kernels
        """Hold dense fp32 linears panel-packed for the native CPU kernels
        (:mod:`deepseek_runtime.checkpoint.cpu_kernels` decides)."""
        self.dtype = dtype
        self.fp8_block = fp8_block
        self.quantization = quantization or LoadQuantization()
        self.keep_fp8 = keep_fp8 or self.quantization.keep_stored_fp8
        self.compressed = compressed if self.quantization.decode_stored else None
        self.device = torch.device(device)
        self.resident = ResidentBytes()
        self._files: dict[str, Path] = {}
        self._stack = ExitStack()
        self._handles: dict[Path, Any] = {}
        self._index_names()

    def _index_names(self) -> None:
        index = self.model_dir / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise CheckpointError(f"{index}: not a safetensors index ({exc})") from None
            for name, filename in weight_map.items():
                path = self.model_dir / filename
                if not path.is_file():
                    raise CheckpointError(
                        f"{index}: shard {filename!r} (holding {name!r}) is missing"
                    )
                self._files[name] = path
            return
        shards = sorted(self.model_dir.glob("*.safetensors"))
        if not shards:
            raise CheckpointError(f"{self.model_dir}: no *.safetensors files and no {INDEX_FILE}")
        for path in shards:
            for name in self._handle(path).keys():  # noqa: SIM118 (safe_open is not iterable)
                self._files[name] = path

    def _handle(self, path: Path) -> Any:
        if path not in self._handles:
            self._handles[path] = self._stack.enter_context(safe_open(str(path), framework="pt"))
        return self._handles[path]

    def close(self) -> None:
        for mapped, _, _ in self.__dict__.pop("_slice_maps", {}).values():
            mapped.close()
        self._stack.close()
        self._handles.clear()

    def __enter__(self) -> WeightStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> Iterator[str]:
        return iter(self._files)

    def has(self, name: str) -> bool:
        return name in self._files

    def raw(self, name: str) -> torch.Tensor:
        """The tensor exactly as stored (no cast, no dequantization)."""
        path = self._files.get(name)
        if path is None:
            raise CheckpointError(f"missing tensor {name!r} in {self.model_dir}")
        try:
            tensor: torch.Tensor = self._handle(path).get_tensor(name)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read tensor {name!r} from {path.name}: {exc}") from None
        return tensor

    def raw_slice(
        self, name: str, shape: tuple[int, ...], dim: int, start: int, stop: int
    ) -> torch.Tensor:
        """``name[..., start:stop, ...]`` along ``dim``, as stored, reading only those bytes.

        For tensor-parallel ranks (:mod:`deepseek_runtime.parallel.shard_loading`): the
        full tensor must have ``shape``; the result owns just the slice. The file is
        memory-mapped and the slice copied out, so only its pages are read (safetensors'
        own ``get_slice`` materialises the whole tensor first).
        """
        path = self._files.get(name)
        if path is None:
            raise CheckpointError(f"missing tensor {name!r} in {self.model_dir}")
        maps: dict[Path, tuple[mmap.mmap, int, dict[str, Any]]] = self.__dict__.setdefault(
            "_slice_maps", {}
        )
        if path not in maps:
            with path.open("rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
                maps[path] = (mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY), 8 + size, header)
        mapped, base, header = maps[path]
        entry = header[name]
        stored = tuple(int(n) for n in entry["shape"])
        if stored != tuple(shape):
            raise CheckpointError(f"tensor {name!r} has shape {stored}, expected {tuple(shape)}")
        if not (0 <= dim < len(stored) and 0 <= start <= stop <= stored[dim]):
            raise CheckpointError(
                f"tensor {name!r}: slice [{start}:{stop}) on dim {dim} is outside {stored}"
            )
        begin, end = entry["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        if begin == end:
            return torch.empty(stored, dtype=dtype).narrow(dim, start, stop - start).clone()
        whole = torch.frombuffer(mapped, dtype=torch.uint8, count=end - begin, offset=base + begin)
        return whole.view(dtype).view(stored).narrow(dim, start, stop - start).clone()

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Tensor ``name`` as ``dtype`` (default: the store's), checked against ``shape``."""
        tensor = self._load(name, shape, dtype)
        self.resident.other += resident_bytes(tensor)
        return tensor

    def _load(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        compressed = self._compressed_module(name, shape)
        if compressed is not None:  # a quantized module read densely (e.g. kv_b_proj)
            return _dense(compressed).to(device=self.device, dtype=dtype or self.dtype)
        tensor = self.raw(name)
        if tuple(tensor.shape) != tuple(shape):
            raise CheckpointError(
                f"tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}"
            )
        target = dtype or self.dtype
        if tensor.dtype == FP8_DTYPE:
            scale_name = f"{name}_scale_inv"
            if not self.has(scale_name):
                raise CheckpointError(f"FP8 tensor {name!r} has no {scale_name!r}")
            try:
                dense = dequantize_fp8_blocks(tensor, self.raw(scale_name), self.fp8_block, target)
            except ValueError as exc:
                raise CheckpointError(f"tensor {scale_name!r}: {exc}") from None
            return dense.to(self.device)
        return tensor.to(device=self.device, dtype=target)

    def get_linear(self, name: str, shape: tuple[int, int]) -> Weight:
        """A linear weight ``[out, in]`` in the store's :class:`LoadQuantization` format.

        A compressed-tensors module decodes into its own format; an FP8-stored weight is
        kept in FP8 with ``keep_fp8`` (or ``fp8``); otherwise the dense weight is held as
        the quantization says (int8 / int4 / FP8 blocks made at load, or dense).
        """
        weight = self._compressed_module(name, shape)
        if weight is None:
            if self.keep_fp8 and self.raw(name).dtype == FP8_DTYPE:
                weight = self._fp8_linear(name, shape)
            else:
                weight = self.hold_linear(name, self._load(name, shape))
        self.resident.linear += resident_bytes(weight)
        self.resident.linear_bf16_equivalent += 2 * shape[0] * shape[1]
        return weight

    def hold_linear(self, name: str, dense: torch.Tensor) -> Weight:
        """A dense ``[out, in]`` weight as it is held: quantized as the store's
        :class:`LoadQuantization` says, then panel-packed when ``pack_cpu_kernels``."""
        weight = quantize_linear(name, dense, self.quantization, self.dtype)
        if (
            self.pack_cpu_kernels
            and isinstance(weight, torch.Tensor)
            and weight.dtype == torch.float32
            and weight.device.type == "cpu"
        ):
            return PackedWeight.pack(weight)
        return weight

    def _compressed_module(self, name: str, shape: tuple[int, ...]) -> Weight | None:
        """The decoded compressed-tensors module ``name`` belongs to, if it is quantized."""
        prefix = name.removesuffix(".weight")
        if self.compressed is None or prefix == name or not self.has(f"{prefix}.weight_scale"):
            return None
        scheme = self.compressed.scheme_for(prefix)
        if scheme is None or scheme.weights is None:
            raise CheckpointError(f"{prefix}: has weight_scale but no config group targets it")
        local = {s: self.raw(f"{prefix}.{s}") for s in ct.SUFFIXES if self.has(f"{prefix}.{s}")}
        try:
            weight = ct.decode_module(local, scheme.weights)
        except ValueError as exc:
            raise CheckpointError(f"{prefix}: {exc}") from None
        logical = (
            tuple(_dense(weight).shape)
            if isinstance(weight, torch.Tensor)
            else (
                weight.out_features,
                weight.in_features,
            )
        )
        if logical != tuple(shape):
            raise CheckpointError(f"tensor {name!r} has shape {logical}, expected {tuple(shape)}")
        if isinstance(weight, torch.Tensor):
            return weight.to(device=self.device, dtype=self.dtype)
        return weight

    def _fp8_linear(self, name: str, shape: tuple[int, int]) -> Fp8Weight:
        dense_check = self.raw(name)
        if tuple(dense_check.shape) != tuple(shape):
            raise CheckpointError(
                f"tensor {name!r} has shape {tuple(dense_check.shape)}, expected {tuple(shape)}"
            )
        scale_name = f"{name}_scale_inv"
        if not self.has(scale_name):
            raise CheckpointError(f"FP8 tensor {name!r} has no {scale_name!r}")
        scale = self.raw(scale_name).float()
        (bo, bi), (rows, cols) = self.fp8_block, shape
        want = ((rows + bo - 1) // bo, (cols + bi - 1) // bi)
        if tuple(scale.shape) != want:
            raise CheckpointError(
                f"tensor {scale_name!r} has shape {tuple(scale.shape)}, expected {want}"
            )
        return Fp8Weight(
            dense_check.to(self.device), scale.to(self.device), self.fp8_block, self.dtype
        )


def _dense(weight: Weight) -> torch.Tensor:
    return weight if isinstance(weight, torch.Tensor) else weight.dequantize()
