"""Builders for adapter tests and benches: a Llama-shaped base whose greedy choices are stable, and LoRA adapters
that actually change its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sharpen(model_dir: Path, seed: int) -> None:
    """Re-draw every matrix at unit scale per input feature (the lm_head 4x): logits spread over several nats, so
    the top two tokens are rarely within float rounding of each other, and two engines agree on every argmax."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                scale = 1.0 if "embed" in name else (4.0 if "lm_head" in name else 1.0) / p.shape[1] ** 0.5
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    model.save_pretrained(model_dir)


def sharp_llama(out: Path, tok: Any, d_model: int = 128, n_layer: int = 2, max_positions: int = 256,
                seed: int = 0) -> Path:
    """A tiny Llama with head_dim 64 (vLLM's CPU attention takes multiples of 32), sharpened."""
    from harness.testing.tiny import build_causal_lm

    base = build_causal_lm(out, tok, arch="llama", d_model=d_model, n_layer=n_layer, n_head=max(1, d_model // 64),
                           max_positions=max_positions, seed=seed)
    sharpen(base, seed)
    return base


def random_lora(base: Path, out: Path, r: int, seed: int, targets: list[str] | None = None, **config: Any) -> Path:
    """A LoRA adapter whose B matrices are random (PEFT starts them at zero, which would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=r, lora_alpha=16, lora_dropout=0.0, target_modules=targets or LLAMA_LINEAR,
                                      **config))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_magnitude" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "magnitude" in name else 0.0))
    model.save_pretrained(str(out))
    return out
