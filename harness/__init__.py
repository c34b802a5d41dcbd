"""harness: evaluate language models and their LoRA / QLoRA adapters, and train those adapters."""

__version__ = "0.1.0"
