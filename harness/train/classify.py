"""Classification training data: sentence (pair) classification, regression (STS-B) and images.

Examples come from the task's `train_examples`: {"inputs": tuple, "label": int | float}. Text inputs
are tokenised as one sequence or a pair, as an evaluation Classify request is; image inputs are a
PIL image or a path. A float label anywhere makes the task a regression (one output, MSE loss).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import HarnessError


def label_space(examples: list[dict[str, Any]], declared: int | None) -> tuple[int, bool]:
    """(number of outputs, is_regression) from the task's declaration or its labels."""
    labels = [ex.get("label") for ex in examples]
    if any(x is None for x in labels):
        i = next(i for i, x in enumerate(labels) if x is None)
        raise HarnessError(f"training example {i + 1}: no 'label'")
    if any(isinstance(x, float) for x in labels):  # float labels (STS-B scores) mean regression
        return 1, True
    if declared == 1:
        return 1, True
    n = max(int(x) for x in labels if x is not None) + 1
    return max(n, declared or 0, 2), False


class TextClassifyData:
    """Tokenised sentence or sentence-pair examples; cross-entropy or (regression) squared error."""

    def __init__(self, examples: list[dict[str, Any]], tokenizer: Any, max_length: int, regression: bool) -> None:
        self.tokenizer = tokenizer
        self.regression = regression
        self.features = []
        for i, ex in enumerate(examples):
            inputs = ex.get("inputs")
            if not isinstance(inputs, (tuple, list)) or not 1 <= len(inputs) <= 2:
                raise HarnessError(f"training example {i + 1}: 'inputs' must be a tuple of one or two texts")
            enc = tokenizer(*inputs, truncation=True, max_length=max_length)
            self.features.append({**{k: v for k, v in enc.items()}, "label": ex["label"]})

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = [r["label"] for r in rows]
        batch = self.tokenizer.pad([{k: v for k, v in r.items() if k != "label"} for r in rows], return_tensors="pt")
        batch = dict(batch)
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if self.regression else torch.long)
        return batch

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return classification_loss_sum(model(**inputs).logits, batch["labels"], self.regression)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["labels"].shape[0])

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())


class ImageClassifyData:
    """Images preprocessed once by the model's image processor; cross-entropy on the labels."""

    def __init__(self, examples: list[dict[str, Any]], processor: Any) -> None:
        from PIL import Image

        self.regression = False
        self.features = []
        for i, ex in enumerate(examples):
            inputs = ex.get("inputs")
            img = inputs[0] if isinstance(inputs, (tuple, list)) and inputs else inputs
            if isinstance(img, str):
                try:
                    img = Image.open(img)
                except OSError as e:
                    raise HarnessError(f"training example {i + 1}: cannot open image {img!r} ({e})") from None
            if not hasattr(img, "convert"):
                raise HarnessError(f"training example {i + 1}: 'inputs' must hold an image or an image path")
            image: Any = img
            pixels = processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]
            self.features.append({"pixel_values": pixels, "label": int(ex["label"])})

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack([r["pixel_values"] for r in rows]),
                "labels": torch.tensor([r["label"] for r in rows], dtype=torch.long)}

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return classification_loss_sum(model(pixel_values=batch["pixel_values"]).logits, batch["labels"], False)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["labels"].shape[0])

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["labels"].shape[0])  # images: throughput counts examples


def classification_loss_sum(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    logits = logits.float()
    if regression:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels, reduction="sum")
    return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")


def image_lora_targets(model: Any) -> tuple[list[str], list[str]]:
    """LoRA on every Conv2d and Linear of the backbone; the classifier head is trained in full (modules_to_save)."""
    targets, heads = [], []
    for name, module in model.named_modules():
        if name.split(".")[0] == "classifier" or name.startswith("classifier"):
            if isinstance(module, torch.nn.Linear):
                heads.append(name.split(".")[0])
            continue
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            targets.append(name)
    return targets, sorted(set(heads)) or ["classifier"]
