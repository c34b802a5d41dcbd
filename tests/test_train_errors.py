"""Bad input to `harness train` / `harness sweep`: exit 2, one `error:` line naming the flag or file, no traceback,
and -o left exactly as it was. Also: --overwrite replaces a run, --resume says what it does when there is no checkpoint."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import run_main

from harness.errors import HarnessError
from harness.train.sft import SFTData
from harness.train.spec import TrainSpec
from harness.train.trainer import train

torch.set_num_threads(1)

TRAIN_DEFAULTS = {"--task": "gsm8k", "--target-modules": "c_attn", "--max-steps": "2", "--batch-size": "2"}
SET = ["--set", "train_limit=4", "--set", "max_length=64", "--quiet"]
SWEEP_DEFAULTS = {**TRAIN_DEFAULTS, "--grid": "r=1", "--limit": "1", "--max-new-tokens": "2"}


# Each setup prepares what -o holds before the command and returns the -o to pass.
def fake_run(out: Path) -> Path:
    """What a finished `harness train` leaves (the bytes do not matter: they must only survive untouched)."""
    out.mkdir()
    (out / "harness_train.json").write_text("{}")
    (out / "adapter_config.json").write_text("{}")
    return out


def fake_sweep(out: Path) -> Path:
    (out / "points" / "r=1").mkdir(parents=True)
    (out / "sweep.json").write_text("{}")
    return out


def foreign(out: Path) -> Path:
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    return out


def a_file(out: Path) -> Path:
    out.write_text("not a directory")
    return out


def below_a_file(out: Path) -> Path:
    return a_file(out) / "sub"


TASK_FLAG = re.compile(r"--task(?![\w-])")  # the flag train and sweep take, not --tasks (run's) or --task-option
Says = list[str | re.Pattern[str]]

# (id, changed options (None drops one), extra args, what -o holds first, text (or a pattern) the one error line
# must contain)
TRAIN_CASES: list[tuple[str, dict[str, str | None], list[str], Callable[[Path], Path] | None, Says]] = [
    ("unknown-task", {"--task": "nope"}, [], None, [TASK_FLAG, "nope"]),
    ("unknown-backend", {}, ["--backend", "nope"], None, ["--backend nope", "hf"]),
    ("group-task", {"--task": "glue"}, [], None, ["glue", "group", TASK_FLAG]),
    ("unknown-method", {}, ["--method", "dpo"], None, ["--method", "dpo"]),
    ("rank-0", {}, ["--r", "0"], None, ["--r", "> 0"]),
    ("negative-lr", {}, ["--lr", "-1"], None, ["--lr", "> 0"]),
    ("zero-alpha", {}, ["--alpha", "0"], None, ["--alpha"]),
    ("bad-target-modules", {"--target-modules": "nope"}, [], None, ["--target-modules", "nope"]),
    ("bad-modules-to-save", {}, ["--modules-to-save", "nope"], None, ["--modules-to-save", "nope"]),
    ("output-is-a-file", {}, [], a_file, ["-o", "is a file"]),
    ("output-below-a-file", {}, [], below_a_file, ["-o", "is a file"]),
    ("finished-run-no-flag", {}, [], fake_run, ["-o", "finished", "--overwrite"]),
    ("foreign-dir-overwrite", {}, ["--overwrite"], foreign, ["-o", "notes.txt", "not a training run"]),
    ("foreign-dir-resume", {}, ["--resume"], foreign, ["-o", "not a training run"]),
    ("resume-and-overwrite", {}, ["--resume", "--overwrite"], fake_run, ["--overwrite", "--resume"]),
    ("missing-model-dir", {"--model": "{tmp}/no-such-model"}, [], None, ["--model", "no-such-model"]),
    ("missing-data-dir", {"--data-dir": "{tmp}/no-such-data"}, [], None, ["--data-dir", "no-such-data"]),
    ("unknown-set-key", {}, ["--set", "nope=1"], None, ["--set nope=1", "unknown training option"]),
    ("bad-set-value", {}, ["--set", "r=two"], None, ["--set r", "'two'"]),
    ("set-invalid-value", {}, ["--set", "dropout=1.5"], None, ["--set dropout=1.5", "--dropout"]),
    ("bad-task-option", {}, ["--task-option", "novalue"], None, ["--task-option", "novalue"]),
    ("unknown-task-option", {}, ["--task-option", "nope=1"], None, ["--task-option nope", "gsm8k"]),
    ("unknown-metric", {}, ["--metric", "bleu"], None, ["--metric bleu", "pass@1_strict"]),
    ("patience-without-eval", {}, ["--patience", "2"], None, ["--patience", "--eval-every"]),
    ("zero-max-steps", {"--max-steps": "0"}, [], None, ["--max-steps", "> 0"]),
    ("bad-model-kind", {}, ["--model-kind", "vision"], None, ["--model-kind", "vision"]),
    ("bad-dtype", {}, ["--dtype", "float8"], None, ["--dtype", "float8"]),
    ("bad-compute-dtype", {}, ["--bnb-4bit-compute-dtype", "int3"], None, ["--bnb-4bit-compute-dtype", "int3"]),
    ("bad-device", {}, ["--device", "toaster"], None, ["--device", "toaster"]),
]

SWEEP_CASES: list[tuple[str, dict[str, str | None], list[str], Callable[[Path], Path] | None, Says]] = [
    ("sweep-backend-option", {}, ["--backend-option", "gpu_memory_utilization=0.5"], None,
     ["--backend-option gpu_memory_utilization", "hf"]),
    ("grid-syntax", {"--grid": "r"}, [], None, ["--grid", "KEY=V1,V2"]),
    ("grid-empty", {"--grid": ";"}, [], None, ["--grid", "empty"]),
    ("grid-unknown-key", {"--grid": "nope=1,2"}, [], None, ["--grid nope=1", "unknown training option"]),
    ("grid-bad-value", {"--grid": "r=1,two"}, [], None, ["--grid r", "'two'"]),
    ("grid-invalid-value", {"--grid": "r=1;lr=-1"}, [], None, ["--grid r=1 lr=-1", "--lr"]),
    ("grid-twice", {"--grid": "r=1;rank=2"}, [], None, ["--grid", "twice"]),
    ("sweep-unknown-task", {"--task": "nope"}, [], None, [TASK_FLAG, "nope"]),
    ("sweep-missing-model", {"--model": "{tmp}/no-such-model"}, [], None, ["--model", "no-such-model"]),
    ("sweep-output-is-a-file", {}, [], a_file, ["-o", "is a file"]),
    ("sweep-existing-no-flag", {}, [], fake_sweep, ["-o", "--resume", "--overwrite"]),
    ("sweep-foreign-overwrite", {}, ["--overwrite"], foreign, ["-o", "not a sweep"]),
    ("sweep-resume-and-overwrite", {}, ["--resume", "--overwrite"], fake_sweep, ["--overwrite", "--resume"]),
    ("sweep-bad-target-modules", {"--target-modules": "nope"}, [], None, ["--target-modules", "nope"]),
    ("sweep-zero-limit", {"--limit": "0"}, [], None, ["--limit", "> 0"]),
    ("sweep-unknown-metric", {}, ["--set", "metric=bleu"], None, ["--metric bleu"]),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: any new, changed or removed file shows."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _args(command: str, defaults: dict[str, str], changed: dict[str, str | None], extra: list[str], model: Path,
          data: Path, out: Path, tmp: Path) -> list[str]:
    opts: dict[str, str | None] = {"--model": str(model), "--data-dir": str(data), "-o": str(out), **defaults, **changed}
    args = [command]
    for flag, value in opts.items():
        if value is not None:
            args += [flag, value.format(tmp=tmp)]
    return args + extra + SET


def _check_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                   args: list[str], must_say: Says) -> None:
    before = snapshot(tmp_path)
    code, stdout, stderr = run_main(monkeypatch, capsys, *args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    assert "Traceback" not in stderr + stdout
    for text in must_say:
        assert text.search(lines[0]) if isinstance(text, re.Pattern) else text in lines[0], (text, lines[0])
    assert snapshot(tmp_path) == before  # nothing new, changed or half-written (cwd is tmp_path too)


@pytest.mark.parametrize(("changed", "extra", "setup", "must_say"), [c[1:] for c in TRAIN_CASES],
                         ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses_bad_input(changed: dict[str, str | None], extra: list[str], setup: Callable[[Path], Path] | None,
                                 must_say: Says, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = setup(tmp_path / "out") if setup is not None else tmp_path / "out"
    args = _args("train", TRAIN_DEFAULTS, changed, extra, tiny_gpt2, gsm8k_data, out, tmp_path)
    _check_refused(monkeypatch, capsys, tmp_path, args, must_say)


@pytest.mark.parametrize(("changed", "extra", "setup", "must_say"), [c[1:] for c in SWEEP_CASES],
                         ids=[c[0] for c in SWEEP_CASES])
def test_sweep_refuses_bad_input(changed: dict[str, str | None], extra: list[str], setup: Callable[[Path], Path] | None,
                                 must_say: Says, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = setup(tmp_path / "sweep") if setup is not None else tmp_path / "sweep"
    args = _args("sweep", SWEEP_DEFAULTS, changed, extra, tiny_gpt2, gsm8k_data, out, tmp_path)
    _check_refused(monkeypatch, capsys, tmp_path, args, must_say)


def test_overwrite_replaces_a_finished_run(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ckpt"
    first = _args("train", TRAIN_DEFAULTS, {}, ["--r", "2", "--save-every", "1"], tiny_gpt2, gsm8k_data, out, tmp_path)
    code, _, err = run_main(monkeypatch, capsys, *first)
    assert code == 0, err[-3000:]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2 and (out / "checkpoint-2").is_dir()
    again = _args("train", TRAIN_DEFAULTS, {}, ["--r", "4"], tiny_gpt2, gsm8k_data, out, tmp_path)
    code, _, err = run_main(monkeypatch, capsys, *again)
    assert code == 2 and "--overwrite" in err and json.loads((out / "adapter_config.json").read_text())["r"] == 2
    code, _, err = run_main(monkeypatch, capsys, *again, "--overwrite")
    assert code == 0, err[-3000:]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert json.loads((out / "harness_train.json").read_text())["hyperparameters"]["r"] == 4
    assert not list(out.glob("checkpoint-*"))  # nothing of the replaced run is left to mix with the new one


def test_sweep_overwrite_replaces_an_earlier_sweep(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    fake_sweep(out)
    (out / "points" / "r=9").mkdir()
    args = _args("sweep", {**SWEEP_DEFAULTS, "--max-steps": "1"}, {}, ["--no-with-base", "--overwrite"], tiny_gpt2,
                 gsm8k_data, out, tmp_path)
    code, stdout, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err[-3000:]
    assert sorted(p.name for p in (out / "points").iterdir()) == ["r=1"]
    assert [p["point"] for p in json.loads((out / "sweep.json").read_text())["points"]] == ["r=1"]
    assert "r=1" in stdout  # the leaderboard


def _crash_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    real = SFTData.loss
    calls = {"n": 0}

    def crashing(self, model, batch):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real(self, model, batch)

    monkeypatch.setattr(SFTData, "loss", crashing)


@pytest.mark.parametrize("save_every", [50, None])
def test_resume_before_the_first_checkpoint_says_so(save_every: int | None, tiny_gpt2: Path, gsm8k_data: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ckpt"
    spec = TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=out, data_dir=gsm8k_data, target_modules="c_attn",
                     max_steps=3, batch_size=2, train_limit=6, max_length=64, save_every=save_every, eval_every=1,
                     eval_limit=1, eval_max_new_tokens=2, quiet=True)
    with monkeypatch.context() as m:
        _crash_at_step(m, 2)  # killed in step 2, after step 1's evaluation wrote checkpoint-best
        with pytest.raises(KeyboardInterrupt):
            train(spec)
    err = capsys.readouterr().err
    assert "interrupted at step 1" in err and "--resume will start from scratch" in err
    assert ("no checkpoint has been written yet" in err) == (save_every is not None)
    assert ("--save-every N" in err) == (save_every is None)  # suggested only when it was not given
    assert (out / "checkpoint-best").is_dir() and not (out / "harness_train.json").exists()
    with pytest.raises(HarnessError, match="--overwrite"):  # leftovers are not silently trained over
        train(spec)
    train(replace(spec, resume=True))
    err = capsys.readouterr().err
    assert "training from scratch" in err
    assert ("no checkpoint has been written" in err) == (save_every is not None)
    assert ("--save-every N" in err) == (save_every is None)
    rec = json.loads((out / "harness_train.json").read_text())
    assert rec["steps"] == 3 and [e["step"] for e in rec["evals"]] == [1, 2, 3]


def test_interrupt_after_a_checkpoint_points_to_it(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ckpt"
    spec = TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=out, data_dir=gsm8k_data, target_modules="c_attn",
                     max_steps=4, batch_size=2, train_limit=6, max_length=64, save_every=2, quiet=True)
    with monkeypatch.context() as m:
        _crash_at_step(m, 3)
        with pytest.raises(KeyboardInterrupt):
            train(spec)
    assert f"--resume continues from {out / 'checkpoint-2'}" in capsys.readouterr().err
