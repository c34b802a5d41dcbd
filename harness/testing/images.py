"""A random image classifier built from a config (ResNet-18 layout or a small ViT, CIFAR-10 labels): no hub access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from harness.models.image import CIFAR10_CLASSES


def tiny_image_classifier(out_dir: Path, arch: str = "resnet", image_size: int = 32, seed: int = 0) -> Path:
    """A random ResNet (ResNet-18 layout: narrow, or full width with "resnet18") or small ViT, 10 CIFAR classes.

    For tests and demos: built from a config, no hub access. Returns the model directory.
    """
    from transformers import AutoModelForImageClassification, ResNetConfig, ViTConfig
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    config: Any
    processor: Any
    labels: dict[str, Any] = {"num_labels": 10, "id2label": dict(enumerate(CIFAR10_CLASSES)),
                              "label2id": {c: i for i, c in enumerate(CIFAR10_CLASSES)}}
    torch.manual_seed(seed)
    if arch in ("resnet", "resnet18"):
        # ResNet-18's layout (basic blocks, depths 2-2-2-2); "resnet18" also has its widths (11M parameters)
        widths = [64, 128, 256, 512] if arch == "resnet18" else [16, 32, 32, 64]
        config = ResNetConfig(num_channels=3, embedding_size=widths[0], hidden_sizes=widths, depths=[2, 2, 2, 2],
                              layer_type="basic", downsample_in_first_stage=False, **labels)
        # ConvNext's processor is what ResNet checkpoints ship; crop_pct=1 keeps the whole 32x32 image.
        processor = ConvNextImageProcessorPil(size={"shortest_edge": image_size}, crop_pct=1.0)
    elif arch == "vit":
        config = ViTConfig(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, **labels)
        processor = ViTImageProcessorPil(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(f"unknown arch {arch!r} (resnet, resnet18 or vit)")
    model = AutoModelForImageClassification.from_config(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    cfg = json.loads((Path(out_dir) / "config.json").read_text())
    assert cfg.get("architectures"), "saved config names its architecture"
    return Path(out_dir)

