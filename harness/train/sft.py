"""Causal supervised fine-tuning data: the task's own prompt, masked out of the loss; the answer plus EOS trained.

Prompt and target are tokenised separately, exactly as evaluation tokenises the prompt before
generating, so the model learns to continue the very token sequence it will later be given.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from harness.errors import HarnessError
from harness.models.causal import CausalLM

IGNORE = -100


def render(tokenizer: Any, prompt: str | tuple[tuple[str, str], ...]) -> str:
    """The prompt text evaluation would feed the model (chat template included): CausalLM.render itself."""
    return CausalLM.render(SimpleNamespace(tokenizer=tokenizer), prompt)  # type: ignore[arg-type]


def encode(tokenizer: Any, prompt: Any, target: str, max_length: int) -> dict[str, list[int]]:
    p = tokenizer(render(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(p) + len(t) > max_length:  # keep the answer: drop the start of the prompt first
        p = p[max(0, len(p) + len(t) - max_length):]
        t = t[: max_length - len(p)]
    return {"input_ids": p + t, "labels": [IGNORE] * len(p) + t}


def pack(features: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Concatenate examples into max_length chunks (each keeps its own prompt masking); fewer pad tokens."""
    ids: list[int] = []
    labels: list[int] = []
    for f in features:
        ids += f["input_ids"]
        labels += f["labels"]
    return [{"input_ids": ids[i : i + max_length], "labels": labels[i : i + max_length]}
            for i in range(0, len(ids), max_length) if any(x != IGNORE for x in labels[i : i + max_length][1:])]


class SFTData:
    """Tokenised causal examples plus collate / loss for the shared loop."""

    def __init__(self, examples: list[dict[str, Any]], tokenizer: Any, max_length: int, packing: bool = False,
                 seed: int = 0) -> None:
        if tokenizer.eos_token_id is None:
            raise HarnessError("the tokenizer has no EOS token; causal SFT trains the answer plus EOS")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        feats = []
        for i, ex in enumerate(examples):
            if "prompt" not in ex or "target" not in ex:
                raise HarnessError(f"training example {i + 1}: causal tasks give 'prompt' and 'target' (got {sorted(ex)})")
            feats.append(encode(tokenizer, ex["prompt"], ex["target"], max_length))
        if packing:
            g = torch.Generator().manual_seed(seed)
            feats = pack([feats[j] for j in torch.randperm(len(feats), generator=g).tolist()], max_length)
        self.features = feats

    def collate(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            attn[i, :n] = 1
        return {"input_ids": ids, "attention_mask": attn, "labels": labels}

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return token_loss_sum(logits, batch["labels"])

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the unmasked labels (the loop divides by the window's count)."""
    # shift the labels, not the logits: no copy of the (batch x length x vocab) tensor
    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[:, 1:]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
