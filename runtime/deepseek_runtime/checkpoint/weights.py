"""Tensor access to a Hugging Face safetensors checkpoint (single file or sharded).

Called by the model layers' ``load`` methods through :class:`WeightStore`. Finds tensors
through ``model.safetensors.index.json`` when present (else every ``*.safetensors`` file),
dequantizes FP8 e4m3 weights that carry a ``<name>_scale_inv`` block scale, casts to the
requested dtype, and checks shapes. A missing tensor or a wrong shape raises
:class:`CheckpointError` naming the tensor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from deepseek_runtime.kernels.fp8 import FP8_DTYPE, Fp8Weight, dequantize_fp8_blocks
from deepseek_runtime.kernels.linear import Weight

INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """The checkpoint's files do not hold what the config says they should."""


class WeightStore:
    """Read-only, name-addressed view of a checkpoint's tensors."""

    def __init__(
        self,
        model_dir: str | Path,
        dtype: torch.dtype = torch.float32,
        fp8_block: tuple[int, int] = (128, 128),
        keep_fp8: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.fp8_block = fp8_block
        self.keep_fp8 = keep_fp8
        self.device = torch.device(device)
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
        full tensor must have ``shape``; the returned tensor owns just the slice.
        """
        path = self._files.get(name)
        if path is None:
            raise CheckpointError(f"missing tensor {name!r} in {self.model_dir}")
        view = self._handle(path).get_slice(name)
        stored = tuple(int(n) for n in view.get_shape())
        if stored != tuple(shape):
            raise CheckpointError(f"tensor {name!r} has shape {stored}, expected {tuple(shape)}")
        if not (0 <= dim < len(stored) and 0 <= start <= stop <= stored[dim]):
            raise CheckpointError(
                f"tensor {name!r}: slice [{start}:{stop}) on dim {dim} is outside {stored}"
            )
        index = tuple(slice(start, stop) if d == dim else slice(None) for d in range(len(stored)))
        tensor: torch.Tensor = view[index]
        return tensor

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Tensor ``name`` as ``dtype`` (default: the store's), checked against ``shape``."""
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
        """A linear weight: kept as :class:`Fp8Weight` when stored in FP8 and ``keep_fp8``."""
        if not self.keep_fp8 or self.raw(name).dtype != FP8_DTYPE:
            return self.get(name, shape)
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
