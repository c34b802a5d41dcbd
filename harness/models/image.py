"""Image classifiers: answer `classify` requests (an image file path, or an inline PNG) with logits.

Preprocessing is the model's own image processor (resize, rescale, normalise as it was trained);
transformers' PIL backend does this without torchvision. Rows that come without a file (the
CIFAR-10 pickles, hub rows) travel as `data:image/png;base64,...` so a request key is the
image content itself and the answer store stays correct whatever the source.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.requests import Classify, logits_in_label_order

DATA_URL = "data:image/png;base64,"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def encode_png(image: Any) -> str:
    """A PIL image (or HxWx3 uint8 array) as an inline PNG reference for a Classify request."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return DATA_URL + base64.b64encode(buf.getvalue()).decode("ascii")


def open_image(ref: str) -> Any:
    """The RGB image a Classify input names; one-line error naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        if ref.startswith(DATA_URL):
            img = Image.open(io.BytesIO(base64.b64decode(ref[len(DATA_URL):])))
        else:
            img = Image.open(ref)
        img.load()
        return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        where = "inline image" if ref.startswith(DATA_URL) else ref
        raise HarnessError(f"{where}: cannot read image ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") \
            from None


class ImageClassifier:
    """Logits of a Hugging Face image classifier (optionally PEFT-wrapped) for batches of images."""

    def __init__(self, model: Any, image_processor: Any, identity: dict[str, Any], spec: Any) -> None:
        self.model = model
        self.processor = image_processor
        self.identity = identity
        self.batch_size = spec.batch_size
        self.device = spec.device
        self.dtype = next(model.parameters()).dtype

    @torch.no_grad()
    def classify(self, requests: list[Classify]) -> list[list[float]]:
        for r in requests:
            if len(r.inputs) != 1:
                raise HarnessError(f"classify: an image classifier takes one image per request, got {len(r.inputs)} inputs")
        images = [open_image(r.inputs[0]) for r in requests]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        logits = self.model(pixel_values=pixels.to(self.device, self.dtype)).logits.float().cpu().tolist()
        id2label = getattr(self.model.config, "id2label", None)
        return [logits_in_label_order(row, id2label, r.labels) for row, r in zip(logits, requests)]


def tiny_image_classifier(out_dir: Path, arch: str = "resnet", image_size: int = 32, seed: int = 0) -> Path:
    """A random ResNet (ResNet-18 layout: narrow, or full width with "resnet18") or small ViT, 10 CIFAR classes.

    For tests and demos: built from a config, no hub access. Returns the model directory.
    """
    from transformers import AutoModelForImageClassification, ResNetConfig, ViTConfig
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    labels = {"id2label": dict(enumerate(CIFAR10_CLASSES)), "label2id": {c: i for i, c in enumerate(CIFAR10_CLASSES)}}
    torch.manual_seed(seed)
    if arch in ("resnet", "resnet18"):
        # ResNet-18's layout (basic blocks, depths 2-2-2-2); "resnet18" also has its widths (11M parameters)
        widths = [64, 128, 256, 512] if arch == "resnet18" else [16, 32, 32, 64]
        config = ResNetConfig(num_channels=3, embedding_size=widths[0], hidden_sizes=widths, depths=[2, 2, 2, 2],
                              layer_type="basic", downsample_in_first_stage=False, num_labels=10, **labels)
        # ConvNext's processor is what ResNet checkpoints ship; crop_pct=1 keeps the whole 32x32 image.
        processor = ConvNextImageProcessorPil(size={"shortest_edge": image_size}, crop_pct=1.0)
    elif arch == "vit":
        config = ViTConfig(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, num_labels=10, **labels)
        processor = ViTImageProcessorPil(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(f"unknown arch {arch!r} (resnet, resnet18 or vit)")
    model = AutoModelForImageClassification.from_config(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    cfg = json.loads((Path(out_dir) / "config.json").read_text())
    assert cfg.get("architectures"), "saved config names its architecture"
    return Path(out_dir)
