"""Weight-only quantized linears (int8 W8A16, int4 W4A16) behind one protocol.

``base`` defines :class:`QuantizedWeight`; ``int8`` and ``int4`` hold the CPU-packed and
CUDA layouts and call torch's packed CPU matmuls or the Triton kernels; ``experts``
stacks them per MoE layer.
"""

from deepseek_runtime.kernels.quant.base import QuantizedWeight

__all__ = ["QuantizedWeight"]
