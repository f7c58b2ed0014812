"""Native CPU kernels: fp32 GEMM over panel-packed weights and the fused MoE forward.

``dsr_cpu.cpp`` holds the kernels (AVX2 + FMA), ``build`` compiles and loads them as the
torch operator library ``torch.ops.dsr_cpu``, and ``packed`` holds weights in their panel
layout; :mod:`deepseek_runtime.checkpoint.cpu_kernels` decides (and says why) whether a
model loads with them.
"""
