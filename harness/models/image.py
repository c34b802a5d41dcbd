"""Image classifiers: answer `classify` requests (an image file path, or an inline PNG) with logits.

Preprocessing is the model's own image processor (resize, rescale, normalise as it was trained);
transformers' PIL backend does this without torchvision. Rows that come without a file (the
CIFAR-10 pickles, hub rows) travel as `data:image/png;base64,...` so a request key is the
image content itself and the answer store stays correct whatever the source.
"""

from __future__ import annotations

import base64
import io
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
