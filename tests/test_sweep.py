"""`harness sweep`: grid parsing, every point trained and evaluated, finished points skipped on a --resume re-run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import run_main

from harness.errors import HarnessError
from harness.train import trainer
from harness.train.spec import TrainSpec
from harness.train.sweep import parse_grid, point_name, run_sweep

torch.set_num_threads(1)


def test_parse_grid() -> None:
    pts = parse_grid("r=1,2,4; lr=1e-4,2e-4")
    assert len(pts) == 6 and pts[0] == {"r": "1", "lr": "1e-4"} and pts[-1] == {"r": "4", "lr": "2e-4"}
    assert point_name(pts[1]) == "r=1_lr=2e-4"
    assert parse_grid("target_modules=c_attn,c_attn+c_proj") == [{"target_modules": "c_attn"},
                                                                 {"target_modules": "c_attn+c_proj"}]
    for bad, msg in (("", "empty"), ("r", "expected KEY"), ("r=", "expected KEY"), ("r=1;rank=2", "twice")):
        with pytest.raises(HarnessError, match=msg):
            parse_grid(bad)


def test_bad_grid_value_fails_before_training(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    base = TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=tmp_path, data_dir=gsm8k_data, quiet=True)
    with pytest.raises(HarnessError, match="--grid r"):
        run_sweep(base, "r=1,two", tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_sweep_trains_evaluates_and_skips_finished(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    base = TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=out, data_dir=gsm8k_data, method="lora",
                     target_modules="c_attn", max_steps=3, batch_size=4, train_limit=16, max_length=96,
                     eval_max_new_tokens=6, quiet=True)
    lb = run_sweep(base, "r=1,2;lr=1e-4,1e-3", out, limit=3, eval_batch_size=8)
    summary = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in summary["points"]] == ["r=1_lr=1e-4", "r=1_lr=1e-3", "r=2_lr=1e-4", "r=2_lr=1e-3"]
    for p in summary["points"]:
        cfg = json.loads((Path(p["checkpoint"]) / "adapter_config.json").read_text())
        assert cfg["r"] == int(p["params"]["r"])
        assert json.loads((Path(p["checkpoint"]) / "harness_train.json").read_text())["hyperparameters"]["lr"] == \
            float(p["params"]["lr"])
        assert "pass@1_strict" in p["metrics"]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 4 and rows[0]["r"] == "1"
    png = (out / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    text = lb.read_text()
    assert "tiny" in text and "(base)" in text and text.count("+ r=") == 4

    # re-run: nothing is trained or evaluated again; a point whose results vanished is only re-evaluated
    def no_training(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    import shutil

    shutil.rmtree(out / "results" / "r=2_lr=1e-3")
    n_files = len(list(out.rglob("*")))
    before = (out / "results" / "r=1_lr=1e-4" / "results.json").stat().st_mtime_ns
    # the re-run goes through `harness sweep`
    args = ["sweep", "--model", str(tiny_gpt2), "--task", "gsm8k", "--grid", "r=1,2;lr=1e-4,1e-3",
            "-o", str(out), "--data-dir", str(gsm8k_data), "--target-modules", "c_attn",
            "--max-steps", "3", "--batch-size", "4", "--limit", "3", "--max-new-tokens", "6",
            "--set", "train_limit=16", "--set", "max_length=96", "--quiet"]
    code, _, err = run_main(monkeypatch, capsys, *args)  # without --resume an existing sweep is refused
    assert code == 2 and "--resume" in err and len(list(out.rglob("*"))) == n_files
    steps_at = args.index("--max-steps") + 1
    changed = [*args[:steps_at], "4", *args[steps_at + 1:]]
    code, _, err = run_main(monkeypatch, capsys, *changed, "--resume")  # a point trained otherwise is not reused
    assert code == 2 and "point r=1_lr=1e-4" in err and "max_steps=3" in err, err
    code, stdout, err = run_main(monkeypatch, capsys, *args, "--resume")
    assert code == 0, err[-3000:]
    assert "r=2_lr=1e-3" in stdout  # the leaderboard is printed
    assert (out / "results" / "r=1_lr=1e-4" / "results.json").stat().st_mtime_ns == before
    assert (out / "results" / "r=2_lr=1e-3" / "results.json").exists()
