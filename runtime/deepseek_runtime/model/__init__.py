"""DeepSeek V2 / V3 model (MLA + DeepSeekMoE) on a paged latent KV cache, and its runner.

Layers (``norm``, ``rope``, ``attention``, ``mlp``, ``moe``) load their own weights from a
:class:`~deepseek_runtime.checkpoint.weights.WeightStore`; ``deepseek`` composes them and
``runner`` is what the engine drives.
"""
