"""One stacked LoRA product per layer for a batch that mixes adapters, instead of PEFT's loop over adapters.

PEFT's mixed forward gathers each adapter's rows and runs that adapter's two small products on them, per linear
layer: with four adapters at batch 1 that is four gathers, eight products and four scatters per layer and token, which
on a CPU costs about as much as the base model's own products. Here every adapter's A matrices are concatenated once
([sum of ranks, in]) and their B matrices too ([out, sum of ranks]); each row's mask keeps only its own adapter's rank
segment (exact zeros elsewhere), so a layer runs two products whatever the number of adapters. The order of the
arithmetic is PEFT's single-adapter forward's (A, then B, then the scaling, then the add), so results agree with
one adapter at a time to float rounding. Rows under "__base__", or under an adapter a layer lacks, get a zero mask.
"""

from __future__ import annotations

import types
from functools import lru_cache
from typing import Any

import torch
from torch import nn

Layout = tuple[tuple[str, int, int, float], ...]  # (adapter name, start, end in the stacked rank axis, scaling)


def install(peft_model: nn.Module) -> int:
    """Give every plain LoRA linear layer (no DoRA or other variant, no LoRA bias) the stacked mixed forward, built
    from the adapters loaded now; other layers keep PEFT's. Returns how many layers got it."""
    n = 0
    module: Any  # PEFT's LoRA layers: their ModuleDicts and attributes are not typed
    for module in peft_model.modules():
        if _stackable(module):
            names = list(module.lora_A.keys())
            a = torch.cat([module.lora_A[k].weight.detach() for k in names])
            b = torch.cat([module.lora_B[k].weight.detach() for k in names], dim=1)
            layout, start = [], 0
            for k in names:
                r = module.lora_A[k].weight.shape[0]
                layout.append((k, start, start + r, float(module.scaling[k])))
                start += r
            module._harness_stack = (tuple(layout), a, b)
            module._mixed_batch_forward = types.MethodType(_stacked_forward, module)
            n += 1
    return n


def _stackable(module: Any) -> bool:
    lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
    if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict) or not lora_a:
        return False
    if getattr(module, "lora_variant", None) or not hasattr(module, "_mixed_batch_forward"):
        return False
    return all(k in lora_b and isinstance(lora_a[k], nn.Linear) and isinstance(lora_b[k], nn.Linear)
               and lora_b[k].bias is None and isinstance(module.scaling.get(k), (int, float)) for k in lora_a)


def _stacked_forward(self: Any, x: torch.Tensor, *args: Any, adapter_names: list[str], **kwargs: Any) -> torch.Tensor:
    for key in ("alora_offsets",):  # PEFT's variant arguments: none applies to plain LoRA
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    layout, a, b = self._harness_stack
    masks = _row_masks(layout, tuple(adapter_names), x.dim(), str(a.device), a.dtype)
    if masks is None:  # no row uses an adapter of this layer
        return result
    mask, scale = masks
    h = nn.functional.linear(x.to(a.dtype), a) * mask
    out = nn.functional.linear(h, b) * scale
    return result + out.to(result.dtype)


@lru_cache(maxsize=512)
def _row_masks(layout: Layout, names: tuple[str, ...], dims: int, device: str,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per row, 1 on its adapter's rank segment (0 elsewhere) and its scaling; shaped to broadcast over x's
    middle axes. Cached: the same rows' adapters recur at every layer and every decoding step."""
    where = {k: (s, e, sc) for k, s, e, sc in layout}
    mask = torch.zeros(len(names), layout[-1][2], dtype=dtype)
    scale = torch.zeros(len(names), dtype=dtype)
    used = False
    for i, name in enumerate(names):
        if name in where:
            s, e, sc = where[name]
            mask[i, s:e] = 1
            scale[i] = sc
            used = True
    if not used:
        return None
    shape = (len(names),) + (1,) * (dims - 2)
    return mask.view(*shape, -1).to(device), scale.view(*shape, 1).to(device)
