"""Triton kernels for CUDA: weight-only int8 / int4 and FP8 block-scaled GEMMs, a grouped
MoE GEMM over stacked experts, and paged MLA decode attention over the latent cache.

Nothing here is imported unless a tensor is on CUDA (see
:mod:`deepseek_runtime.kernels.dispatch`); the tests run every kernel on CPU under
Triton's interpreter (``TRITON_INTERPRET=1``) against the torch reference.
"""
