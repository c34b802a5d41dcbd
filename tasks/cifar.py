"""CIFAR-10 (Krizhevsky, 2009): 10-class image classification with any Hugging Face image classifier.

Data, for the test split (train for `train_examples`):
- hub `uoft-cs/cifar10` (`img`, `label`);
- the original python pickles: DIR/cifar-10-batches-py/test_batch (data_batch_1..5 for train),
  read with an unpickler that only builds NumPy arrays (a pickle can run code otherwise);
- image folders DIR/CLASS/*.png|jpg (also DIR/test/CLASS/...), class names as in CIFAR-10;
- flat folders of `cifar10_<index>_<label>.png` files (foolbox's sample layout).
`--data-dir DIR` or `--task-option images=PATH` (a folder or a batch file). Folder rows are
interleaved class by class, so `--limit 50` takes five images of each class.

The model's head index is the CIFAR-10 label id (airplane=0 ... truck=9), as in every CIFAR-10
checkpoint on the hub. Metrics: accuracy, accuracy on each class; the confusion matrix goes in details.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from harness.data import cascade, load_hub
from harness.errors import HarnessError
from harness.metrics import classification as cm
from harness.models.image import CIFAR10_CLASSES, encode_png
from harness.requests import Answer, Classify, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_FOOLBOX = re.compile(r"^cifar10_(\d+)_(\d+)\.png$")
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, {"image": inline PNG, "label"}) rows of a cifar-10-batches-py batch file."""
    import numpy as np

    try:
        with path.open("rb") as f:
            batch = _NumpyOnly(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise HarnessError(f"{path}: not a CIFAR-10 python batch ({str(e)[:120]})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise HarnessError(f"{path}: not a CIFAR-10 python batch (expected keys b'data' and b'labels')")
    data = np.asarray(batch[b"data"])
    labels = list(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
        raise HarnessError(f"{path}: data has shape {data.shape}, expected ({len(labels)}, 3072)")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8)
    return [(f"{path} row {i}", {"image": encode_png(img), "label": lab}) for i, (img, lab) in enumerate(zip(images, labels), 1)]


def _check_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise HarnessError(f"{path}: cannot read image ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") \
            from None


def read_folder(root: Path) -> list[tuple[str, dict[str, Any]]] | None:
    """Rows of CLASS/*.png|jpg folders or of a flat foolbox-style folder; None when `root` is neither."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [p for p in subdirs if p.name in CIFAR10_CLASSES]
    if classes:
        stray = [p.name for p in subdirs if p.name not in CIFAR10_CLASSES]
        if stray:
            raise HarnessError(f"{root / stray[0]}: not a CIFAR-10 class folder (use {', '.join(CIFAR10_CLASSES)})")
        per_class = [sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for d in classes]
        out = []
        for i in range(max(len(files) for files in per_class)):
            for d, files in zip(classes, per_class):
                if i < len(files):
                    out.append((str(files[i]), {"image": str(files[i]), "label": CIFAR10_CLASSES.index(d.name)}))
        return out
    flat = sorted((int(m[1]), f, int(m[2])) for f in root.iterdir() if (m := _FOOLBOX.match(f.name)))
    if flat:
        return [(str(f), {"image": str(f), "label": lab}) for _, f, lab in flat]
    return None


def _resolve(path: Path, split: str) -> tuple[str, list[tuple[str, dict[str, Any]]]] | None:
    """Rows found at `path` in any supported layout, or None."""
    batches = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    if path.is_file():
        return str(path), read_batch(path)
    for base in (path / "cifar-10-batches-py", path):
        files = [base / b for b in batches]
        if all(f.is_file() for f in files):
            return str(files[0]) if len(files) == 1 else f"{base}/data_batch_1..5", [r for f in files for r in read_batch(f)]
    for base in (path / split, path / "cifar10" / split, path, path / "cifar10"):
        if base.is_dir():
            rows = read_folder(base)
            if rows:
                return str(base), rows
    return None


class CIFAR10(Task):
    name = "cifar10"
    version = "1"
    output_type = "classify"
    metrics = ("acc",)
    option_keys = {"images": "CIFAR-10 batch file, class folders or cifar10_<i>_<label>.png files"}
    data_source = "hub uoft-cs/cifar10 (test); local cifar-10-batches-py/test_batch or CLASS/*.png|jpg folders"

    def _rows(self, split: str) -> list[Doc]:
        def hub() -> tuple[tuple[str, list[tuple[str, dict[str, Any]]]], str]:
            rows = load_hub("uoft-cs/cifar10", None, split, "cifar-10-batches-py/test_batch or CLASS/*.png folders")
            src = f"hub:uoft-cs/cifar10/{split}"
            return (src, [(f"{src} row {i}", {"image": encode_png(r["img"]) if "img" in r else None,
                                              "label": r.get("label")}) for i, r in enumerate(rows, 1)]), src

        batch = "test_batch" if split == "test" else "data_batch_*"
        # the data dir itself is the one layout: `_resolve` knows the batch files and folder shapes under it
        found, _ = cascade(self.cfg.options.get("images") or None, self.cfg.data_dir, (".",),
                           lambda p: _resolve(p, split), hub, flag="--task-option images",
                           missing=f"no cifar-10-batches-py/{batch} and no CLASS/*.png|jpg folders")
        src, raw = found
        self.source_description = src
        docs = []
        for i, (where, r) in enumerate(raw):
            if r.get("image") is None or r.get("label") is None:
                raise HarnessError(f"{where}: missing column {'img' if r.get('image') is None else 'label'}")
            label = r["label"]
            if not isinstance(label, int) or not 0 <= label < 10:
                raise HarnessError(f"{where}: label {label!r} out of range 0..9")
            if not r["image"].startswith("data:"):
                _check_image(Path(r["image"]))
            docs.append({"id": str(i), "image": r["image"], "label": label})
        return docs

    def docs(self) -> list[Doc]:
        return self._rows("test")

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        if model.kind != "image":
            raise HarnessError(f"task {self.name}: needs an image classifier (--model-kind image), not a "
                               f"{model.kind} model")
        return [Classify((doc["image"],), labels=CIFAR10_CLASSES)]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        logits = [float(x) for x in answers[0]]
        if len(logits) != 10:
            raise HarnessError(f"task {self.name} needs a 10-class head, the model's head has {len(logits)} outputs "
                               "(use --num-labels 10 or an adapter trained on CIFAR-10)")
        pred = max(range(10), key=logits.__getitem__)
        image = doc["image"] if not doc["image"].startswith("data:") else f"<inline png, row {int(doc['id']) + 1}>"
        return {"image": image, "label": CIFAR10_CLASSES[doc["label"]], "pred": CIFAR10_CLASSES[pred], "logits": logits,
                "metrics": {"acc": float(pred == doc["label"])}}

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        gold = [s["label"] for s in samples]
        pred = [s["pred"] for s in samples]
        out: dict[str, Any] = {"acc": cm.accuracy(gold, pred)}
        out.update(cm.per_class_accuracy(gold, pred, CIFAR10_CLASSES, CIFAR10_CLASSES))
        out["confusion_matrix"] = cm.confusion(gold, pred, CIFAR10_CLASSES, CIFAR10_CLASSES)
        return out

    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        """{"inputs": (image path, or a PIL image for rows without a file,), "label"} for image-classifier training."""
        from harness.models.image import open_image

        return [{"inputs": (open_image(d["image"]) if d["image"].startswith("data:") else d["image"],), "label": d["label"]}
                for d in self._rows(split)]
