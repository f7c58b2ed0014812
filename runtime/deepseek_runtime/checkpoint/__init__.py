"""Hugging Face checkpoint I/O for DeepSeek V2/V3: config model, safetensors loading, tiny checkpoints."""
