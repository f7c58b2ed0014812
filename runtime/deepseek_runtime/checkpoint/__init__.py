"""Hugging Face checkpoint I/O for DeepSeek V2/V3: config, safetensors, tiny checkpoints."""
