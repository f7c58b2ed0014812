"""The backend choice: Triton only for CUDA tensors with Triton installed."""

from __future__ import annotations

import pytest

from deepseek_runtime.kernels.dispatch import backend_for, choose_backend

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("device", "installed", "want"),
    [
        ("cuda", True, "triton"),
        ("cuda", False, "torch"),
        ("cpu", True, "torch"),
        ("cpu", False, "torch"),
        ("meta", True, "torch"),
    ],
)
def test_choose_backend(device: str, installed: bool, want: str) -> None:
    assert choose_backend(device, triton_available=installed) == want


def test_cpu_tensors_never_take_triton_here() -> None:
    assert backend_for("cpu") == "torch"
