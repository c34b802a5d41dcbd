"""Encoders with a classification (or regression) head: answer `classify` requests with logits.

The model is an `AutoModelForSequenceClassification`, optionally PEFT-wrapped; a LoRA adapter
trained with a head (modules_to_save) brings its own head, which loading.py sizes before load.
Texts and text pairs are tokenised in batches the way the GLUE baselines feed them (pairs as
[CLS] a [SEP] b [SEP]), truncated to the model's maximum length.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import HarnessError
from harness.requests import Classify, logits_in_label_order


class EncoderClassifier:
    """Logits for single texts or text pairs; regression heads (num_labels == 1) give one float."""

    def __init__(self, model: Any, tokenizer: Any, identity: dict[str, Any], spec: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.batch_size = spec.batch_size
        self.device = spec.device
        cfg = model.config
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # decoder-only models used as classifiers
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = tokenizer.pad_token_id
        self.num_labels = int(getattr(cfg, "num_labels", 2))
        limits = [int(x) for x in (getattr(tokenizer, "model_max_length", None),
                                   getattr(cfg, "max_position_embeddings", None)) if x and int(x) < 1_000_000]
        self.max_length = min(limits) if limits else 512

    @torch.no_grad()
    def classify(self, requests: list[Classify]) -> list[list[float]]:
        out: list[list[float] | None] = [None] * len(requests)
        # Singles and pairs are tokenised separately (a batch call takes one shape).
        for width in sorted({len(r.inputs) for r in requests}):
            idx = [i for i, r in enumerate(requests) if len(r.inputs) == width]
            if width not in (1, 2):
                raise HarnessError(f"classify: an encoder takes one text or a pair of texts, got {width} inputs")
            first = [requests[i].inputs[0] for i in idx]
            second = [requests[i].inputs[1] for i in idx] if width == 2 else None
            enc = self.tokenizer(first, second, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            logits = self.model(**enc).logits.float().cpu()
            id2label = getattr(self.model.config, "id2label", None)
            for i, row in zip(idx, logits.tolist()):
                out[i] = logits_in_label_order(row, id2label, requests[i].labels)
        return [o or [] for o in out]
