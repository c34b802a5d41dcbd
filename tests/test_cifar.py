"""CIFAR-10: image folders, foolbox PNGs and python pickles of the real test set; tiny ResNet / ViT, with LoRA."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix

from harness.errors import HarnessError
from harness.evaluate import RunSpec, run
from harness.leaderboard import render
from harness.models.image import CIFAR10_CLASSES, open_image
from harness.models.loading import ModelSpec
from harness.results import read_results
from harness.task import ModelInfo, TaskConfig
from harness.testing.images import tiny_image_classifier
from tasks.cifar import CIFAR10


def _task(data_dir: Path | None = None, **options: str) -> CIFAR10:
    return CIFAR10(TaskConfig(data_dir=data_dir, options=options))


def write_batch(path: Path, images: list[np.ndarray], labels: list[int]) -> Path:
    """A batch in the original cifar-10-batches-py format (dict of bytes keys; data rows are R, G, B planes)."""
    data = np.stack([im.transpose(2, 0, 1).reshape(-1) for im in images]).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
                     b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}, f, protocol=2)
    return path


@pytest.fixture(scope="module")
def foolbox(shared_data: Path) -> Path:
    return shared_data / "cifar10" / "foolbox_test_first20_png"


@pytest.fixture(scope="module")
def pickled_foolbox(foolbox: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 20 lossless foolbox test images as a cifar-10-batches-py/test_batch (labels from their file names)."""
    docs = _task(images=str(foolbox)).docs()
    images = [np.asarray(Image.open(d["image"]).convert("RGB")) for d in docs]
    root = tmp_path_factory.mktemp("cifar-pickle")
    write_batch(root / "cifar-10-batches-py" / "test_batch", images, [d["label"] for d in docs])
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ResNet-18 (random, from its config), a narrow ResNet-18 layout, a small ViT, and a LoRA adapter on every
    Conv2d/Linear of the narrow ResNet."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageClassification

    out = {a: tiny_image_classifier(tmp_path_factory.mktemp(a), a) for a in ("resnet", "resnet18", "vit")}
    base = AutoModelForImageClassification.from_pretrained(out["resnet"])
    targets = [n for n, m in base.named_modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not n.startswith("classifier")]
    assert any(isinstance(base.get_submodule(n), torch.nn.Conv2d) for n in targets)
    torch.manual_seed(1)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=targets, modules_to_save=["classifier"],
                                           init_lora_weights=False))
    with torch.no_grad():
        peft.base_model.model.classifier.modules_to_save["default"][1].weight.mul_(3.0)  # a head unlike the base's
    out["lora"] = tmp_path_factory.mktemp("resnet-lora")
    peft.save_pretrained(out["lora"])
    return out


def _direct_logits(model_dir: Path, adapter: Path | None, images: list[str]) -> list[list[float]]:
    from peft import PeftModel
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    proc = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModelForImageClassification.from_pretrained(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.no_grad():
        px = proc(images=[open_image(i) for i in images], return_tensors="pt")["pixel_values"]
        return model.eval()(pixel_values=px).logits.tolist()


def _samples(results: Path) -> list[dict]:
    return [json.loads(x) for x in (results.parent / "samples" / "cifar10.jsonl").read_text().splitlines()]


# --- data ------------------------------------------------------------------------------------


def test_real_layouts_and_pickles(shared_data: Path, foolbox: Path, pickled_foolbox: Path) -> None:
    folders = shared_data / "cifar10" / "yoongikim_test_jpg_first100_per_class"
    docs = _task(folders).docs()
    assert len(docs) == 1000
    assert [d["label"] for d in docs[:20]] == list(range(10)) * 2  # interleaved, so --limit takes every class
    assert docs[0]["image"].endswith("airplane/0000.jpg")
    fb = _task(images=str(foolbox)).docs()
    assert [d["label"] for d in fb[:4]] == [3, 8, 8, 0]  # cifar10_00_3.png, _01_8, _02_8, _03_0: the test set's order
    pk = _task(pickled_foolbox).docs()
    assert [d["label"] for d in pk] == [d["label"] for d in fb]
    for a, b in zip(pk, fb):  # lossless both ways: the pickled rows decode to the PNG files' pixels
        assert pk[0]["image"].startswith("data:image/png;base64,")
        assert np.array_equal(np.asarray(open_image(a["image"])), np.asarray(open_image(b["image"])))
    ex = _task(pickled_foolbox).train_examples("test", ModelInfo("image"))
    assert ex[0]["label"] == 3 and ex[0]["inputs"][0].size == (32, 32)


def test_malformed_data_errors(tmp_path: Path, foolbox: Path) -> None:
    bad = tmp_path / "imgs" / "cat"
    bad.mkdir(parents=True)
    (bad / "0001.png").write_bytes(b"not a png at all")
    with pytest.raises(HarnessError, match=rf"{bad / '0001.png'}: cannot read image"):
        _task(tmp_path / "imgs").docs()
    (tmp_path / "imgs" / "kitten").mkdir()
    with pytest.raises(HarnessError, match="kitten: not a CIFAR-10 class folder"):
        _task(tmp_path / "imgs").docs()
    img = np.zeros((32, 32, 3), np.uint8)
    batch = write_batch(tmp_path / "p" / "test_batch", [img, img], [1, 12])
    with pytest.raises(HarnessError, match=rf"{batch} row 2: label 12 out of range 0..9"):
        _task(tmp_path / "p").docs()
    evil = tmp_path / "evil" / "test_batch"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps({b"data": __import__("os").getcwd}))  # a pickle that would call a function
    with pytest.raises(HarnessError, match="refusing to load"):
        _task(tmp_path / "evil").docs()
    with pytest.raises(HarnessError, match="no cifar-10-batches-py/test_batch and no CLASS"):
        _task(tmp_path / "evil" / "..").docs()
    with pytest.raises(HarnessError, match="could not load dataset uoft-cs/cifar10"):
        _task().docs()  # offline: one line naming the hub id and the local layouts
    with pytest.raises(HarnessError, match="needs an image classifier"):
        CIFAR10(TaskConfig()).requests({"image": "x.png"}, ModelInfo("causal"))


# --- models ----------------------------------------------------------------------------------


def test_resnet_and_vit_on_real_jpgs(models: dict[str, Path], shared_data: Path, tmp_path: Path) -> None:
    folders = shared_data / "cifar10" / "yoongikim_test_jpg_first100_per_class"
    for arch in ("resnet18", "vit"):
        spec = RunSpec(model=ModelSpec(model=str(models[arch]), batch_size=16), tasks=["cifar10"],
                       task_cfg=TaskConfig(limit=30, data_dir=folders), output_dir=tmp_path, run_name=arch, quiet=True)
        [path] = run(spec)
        res = read_results(path)
        entry = res["tasks"]["cifar10"]
        assert res["model"]["kind"] == "image" and entry["n"] == 30
        samples = _samples(path)
        direct = _direct_logits(models[arch], None, [s["image"] for s in samples])
        for s, d in zip(samples, direct):
            assert s["logits"] == pytest.approx(d, abs=1e-4)
        gold = [s["label"] for s in samples]
        pred = [s["pred"] for s in samples]
        assert pred == [CIFAR10_CLASSES[int(np.argmax(d))] for d in direct]
        m = entry["metrics"]
        assert m["acc"]["value"] == pytest.approx(np.mean([g == p for g, p in zip(gold, pred)]))
        for c in CIFAR10_CLASSES:  # three of each class in the first 30 interleaved rows
            hits = [p == c for g, p in zip(gold, pred) if g == c]
            assert len(hits) == 3 and m[f"acc_{c}"]["value"] == pytest.approx(np.mean(hits))
        conf = entry["details"]["confusion_matrix"]
        assert conf["matrix"] == confusion_matrix(gold, pred, labels=list(CIFAR10_CLASSES)).tolist()


def test_lora_adapter_on_pickles_and_pngs_through_cli(cli, models: dict[str, Path], foolbox: Path,
                                                      pickled_foolbox: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    cli("run", "-m", str(models["resnet"]), "--adapter", str(models["lora"]), "--with-base", "-t", "cifar10",
        "--data-dir", str(pickled_foolbox), "-o", str(out), "--run-name", "pk", "-q", check=True)
    run(RunSpec(model=ModelSpec(model=str(models["resnet"]), adapters=[str(models["lora"])], with_base=True),
                tasks=["cifar10"], task_cfg=TaskConfig(options={"images": str(foolbox)}), output_dir=out,
                run_name="png", quiet=True))
    pk, png = _samples(out / f"pk__{models['lora'].name}" / "results.json"), \
        _samples(out / f"png__{models['lora'].name}" / "results.json")
    assert len(pk) == len(png) == 20
    for a, b in zip(pk, png):  # the same lossless images from two layouts get the same answers
        assert a["logits"] == pytest.approx(b["logits"], abs=1e-5) and a["label"] == b["label"]
    direct = _direct_logits(models["resnet"], models["lora"], [s["image"] for s in png])
    for s, d in zip(png, direct):
        assert s["logits"] == pytest.approx(d, abs=1e-4)
    base = _samples(out / "png__base" / "results.json")
    assert any(abs(x - y) > 1e-3 for s, b in zip(png, base) for x, y in zip(s["logits"], b["logits"]))
    board = render(out)
    assert "cifar10/acc (%)" in board and "(base)" in board and f"+ {models['lora'].name}" in board
    assert "cifar10/acc_airplane" in board


def test_head_in_another_label_order_is_scored_by_name(models: dict[str, Path], foolbox: Path, tmp_path: Path) -> None:
    """A checkpoint whose head lists the CIFAR classes in another order gives the same scores as one in CIFAR order."""
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(models["resnet"])
    perm = [3, 7, 0, 9, 1, 5, 2, 8, 4, 6]  # new head row j = old class perm[j]
    head = model.classifier[1]
    with torch.no_grad():
        head.weight.copy_(head.weight[perm].clone())
        head.bias.copy_(head.bias[perm].clone())
    model.config.id2label = {j: CIFAR10_CLASSES[c].upper() for j, c in enumerate(perm)}  # names match case-insensitively
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    shuffled = tmp_path / "shuffled"
    model.save_pretrained(shuffled)
    for f in models["resnet"].glob("preprocessor_config.json"):
        (shuffled / f.name).write_text(f.read_text())
    preds = {}
    for name, path in (("cifar-order", models["resnet"]), ("shuffled", shuffled)):
        spec = RunSpec(model=ModelSpec(model=str(path)), tasks=["cifar10"], task_cfg=TaskConfig(data_dir=foolbox),
                       output_dir=tmp_path / "r", run_name=name, quiet=True)
        [res] = run(spec)
        preds[name] = [(s["pred"], s["logits"]) for s in _samples(res)]
    for (p1, l1), (p2, l2) in zip(preds["cifar-order"], preds["shuffled"]):
        assert p1 == p2 and l1 == pytest.approx(l2, abs=1e-5)
