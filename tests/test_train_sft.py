"""Causal SFT: prompt masking, the loss falls, exact resume after a crash, and `harness train` / `harness run` end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.errors import HarnessError
from harness.task import TaskConfig
from harness.train.sft import IGNORE, SFTData, render
from harness.train.spec import TrainSpec
from harness.train.trainer import train
from tasks.gsm8k import GSM8K

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def _tokenizer(path: Path):  # noqa: ANN202
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_masking_excludes_every_prompt_token(tiny_gpt2: Path, gsm8k_data: Path) -> None:
    tok = _tokenizer(tiny_gpt2)
    examples = GSM8K(TaskConfig(data_dir=gsm8k_data)).train_examples()[:30]
    data = SFTData(examples, tok, max_length=512)
    for ex, f in zip(examples, data.features):
        prompt_ids = tok(ex["prompt"], add_special_tokens=False)["input_ids"]
        n = len(prompt_ids)
        assert f["input_ids"][:n] == prompt_ids  # the exact tokens evaluation feeds the model
        assert all(x == IGNORE for x in f["labels"][:n])
        trained = f["labels"][n:]
        assert IGNORE not in trained and trained[-1] == tok.eos_token_id
        assert tok.decode(trained[:-1]) == ex["target"]
    # packing keeps each example's masking: every label is either IGNORE or the token at that position
    packed = SFTData(examples, tok, max_length=64, packing=True)
    n_trained = sum(sum(x != IGNORE for x in f["labels"]) for f in packed.features)
    assert n_trained == sum(sum(x != IGNORE for x in f["labels"]) for f in data.features)
    for f in packed.features:
        assert len(f["input_ids"]) <= 64
        assert all(lab in (IGNORE, tid) for lab, tid in zip(f["labels"], f["input_ids"]))


def test_chat_prompt_rendered_like_evaluation(tiny_gpt2: Path, gsm8k_data: Path) -> None:
    from harness.models.causal import CausalLM
    from harness.models.loading import ModelSpec

    tok = _tokenizer(tiny_gpt2)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}" \
                        "{% if add_generation_prompt %}<assistant>{% endif %}"
    from transformers import AutoModelForCausalLM

    task = GSM8K(TaskConfig(data_dir=gsm8k_data, chat_template=True))
    ex = task.train_examples()[0]
    assert isinstance(ex["prompt"], tuple)
    lm = CausalLM(AutoModelForCausalLM.from_pretrained(tiny_gpt2), tok, {}, ModelSpec(model=str(tiny_gpt2)))
    row = task._rows("train")[0]
    assert ex["prompt"] == task.requests({"id": "0", **row})[0].prompt  # the evaluation request's prompt
    assert render(tok, ex["prompt"]) == lm.render(ex["prompt"]) and render(tok, ex["prompt"]).endswith("<assistant>")
    f = SFTData([ex], tok, max_length=512).features[0]
    n = len(tok(lm.render(ex["prompt"]), add_special_tokens=False)["input_ids"])
    assert all(x == IGNORE for x in f["labels"][:n]) and f["labels"][n] != IGNORE


def _spec(model: Path, data: Path, out: Path, **kw) -> TrainSpec:  # noqa: ANN003
    base = dict(model=str(model), task="gsm8k", output_dir=out, data_dir=data, method="lora", r=8, alpha=16,
                target_modules="all-linear", lr=3e-3, batch_size=8, max_steps=30, warmup_steps=3, train_limit=120,
                max_length=128, quiet=True)
    base.update(kw)
    return TrainSpec(**base)


def test_lora_loss_falls_and_checkpoint_evaluates(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec

    out = train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "ckpt", eval_limit=4, eval_max_new_tokens=8,
                      metric="pass@1_flexible"))
    rec = json.loads((out / "harness_train.json").read_text())
    losses = [v for _, v in rec["loss_curve"]]
    assert len(losses) == 30
    # a random base starts at the uniform loss ln(vocab); LoRA alone moves it down steadily
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.25 and last < math.log(len(_tokenizer(tiny_gpt2))) - 0.25, losses
    assert 0 < rec["trainable_params"] < rec["total_params"] and 0 < rec["trainable_share"] < 1
    assert rec["base"]["base_hash"] and rec["data"]["hash"] and rec["hyperparameters"]["r"] == 8
    assert rec["peak_memory_mb"] > 0 and rec["wall_time_s"] > 0 and rec["tokens_per_s"] > 0
    assert rec["evals"] and rec["evals"][-1]["step"] == 30  # evaluated through the task at the end
    assert (out / "adapter_config.json").exists() and (out / "tokenizer.json").exists()
    # the harness evaluates the checkpoint as an adapter
    paths = run(RunSpec(model=ModelSpec(model=str(tiny_gpt2), adapters=[str(out)], with_base=True, batch_size=8),
                        tasks=["gsm8k"], task_cfg=TaskConfig(data_dir=gsm8k_data, limit=4, max_new_tokens=8),
                        output_dir=tmp_path / "results", run_name="r", quiet=True))
    labels = {json.loads(p.read_text())["label"] for p in paths}
    assert labels == {"base", "ckpt"}
    # the same directory again is refused rather than overwritten
    with pytest.raises(HarnessError, match="finished training run"):
        train(_spec(tiny_gpt2, gsm8k_data, out))


def test_resume_after_crash_matches_uninterrupted(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(max_steps=12, grad_accum=2, batch_size=4, dropout=0.1, save_every=4, eval_every=6, eval_limit=3,
              eval_max_new_tokens=6, metric="pass@1_flexible", scheduler="cosine", train_limit=40)
    whole = train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "whole", **kw))

    calls = {"n": 0}
    real_loss = SFTData.loss

    def crashing(self, model, batch):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 19:  # during optimizer step 10, after checkpoint-8
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    monkeypatch.setattr(SFTData, "loss", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "crash", **kw))
    monkeypatch.setattr(SFTData, "loss", real_loss)
    assert not (tmp_path / "crash" / "harness_train.json").exists()
    assert (tmp_path / "crash" / "checkpoint-8").is_dir()
    with pytest.raises(HarnessError, match="--resume"):
        train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "crash", **kw))
    resumed = train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "crash", resume=True, **kw))

    a = json.loads((whole / "harness_train.json").read_text())
    b = json.loads((resumed / "harness_train.json").read_text())
    assert a["loss_curve"] == b["loss_curve"] and len(a["loss_curve"]) == 12
    assert a["evals"] == b["evals"]
    wa, wb = load_file(str(whole / "adapter_model.safetensors")), load_file(str(resumed / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # resuming with different options is refused
    with pytest.raises(HarnessError, match="option lr"):
        (tmp_path / "other").mkdir()
        import shutil

        shutil.copytree(tmp_path / "crash" / "checkpoint-8", tmp_path / "other" / "checkpoint-8")
        train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "other", resume=True, **{**kw, "lr": 1e-3}))


def test_spec_validation_names_the_flag() -> None:
    spec = TrainSpec(model="m", task="gsm8k", output_dir=Path("o"))
    for change, flag in (({"method": "dpo"}, "--method"), ({"optimizer": "sgd"}, "--optimizer"),
                         ({"r": "0"}, "--r"), ({"lr": "x"}, "--set lr"), ({"patience": "2"}, "--patience"),
                         ({"nope": "1"}, "nope")):
        with pytest.raises(HarnessError, match=flag):
            spec.with_overrides(change)
    assert spec.with_overrides({"use_dora": "true", "lr": "1e-4", "max_steps": "none"}).use_dora is True


def test_train_cli_end_to_end(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    harness = str(Path(sys.executable).parent / "harness")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "cli-ckpt"
    cmd = [harness, "train", "--model", str(tiny_gpt2), "--task", "gsm8k", "--data-dir", str(gsm8k_data),
           "--method", "lora", "--r", "4", "--alpha", "8", "--target-modules", "c_attn,c_proj", "--lr", "2e-3",
           "--max-steps", "6", "--batch-size", "4", "--grad-accum", "2", "--scheduler", "cosine_with_restarts",
           "--num-cycles", "2", "--warmup-steps", "1", "--weight-decay", "0.01", "--use-rslora",
           "--set", "max_length=96", "--set", "train_limit=32", "-o", str(out), "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["use_rslora"] is True and set(cfg["target_modules"]) == {"c_attn", "c_proj"}
    rec = json.loads((out / "harness_train.json").read_text())
    assert rec["hyperparameters"]["scheduler"] == "cosine_with_restarts" and rec["steps"] == 6
    # a bad flag is one line on stderr and exit 2
    p = subprocess.run(cmd[:-3] + ["--optimizer", "sgd", "-o", str(tmp_path / "x")], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 2 and p.stderr.strip().startswith("error: --optimizer") and len(p.stderr.strip().splitlines()) == 1
    # `harness run --adapter` evaluates the checkpoint
    p = subprocess.run([harness, "run", "--model", str(tiny_gpt2), "--adapter", str(out), "--tasks", "gsm8k",
                        "--data-dir", str(gsm8k_data), "--limit", "3", "--max-new-tokens", "8", "-o",
                        str(tmp_path / "res"), "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(next((tmp_path / "res").rglob("results.json")).read_text())
    assert res["model"]["adapter"] == "cli-ckpt" and "pass@1_strict" in res["tasks"]["gsm8k"]["metrics"]


def test_early_stopping_keeps_the_best_weights(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    # an untrained tiny model never answers correctly: the metric cannot improve after the first evaluation
    out = train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "es", max_steps=20, eval_every=2, patience=2, eval_limit=2, save_every=2,
                      eval_max_new_tokens=4, metric="pass@1_strict", train_limit=40))
    rec = json.loads((out / "harness_train.json").read_text())
    assert rec["stopped_early"] and rec["steps"] == 6 and [e["step"] for e in rec["evals"]] == [2, 4, 6]
    assert rec["best"]["step"] == 2 and rec["final_weights"] == "best (step 2)"
    best = torch.load(out / "checkpoint-best" / "trainable.pt")
    final = load_file(str(out / "adapter_model.safetensors"))
    best = {k.replace(".default", ""): v for k, v in best.items()}
    assert final.keys() == best.keys()
    assert all(torch.equal(final[k], best[k]) for k in final)
    last = {k.replace(".default", ""): v for k, v in torch.load(out / "checkpoint-6" / "trainable.pt").items()}
    assert not all(torch.equal(final[k], last[k]) for k in final)  # the step-6 weights were replaced by the best


@pytest.mark.parametrize("variant", [{"use_dora": True}, {"use_rslora": True, "optimizer": "adamw_8bit"}])
def test_dora_and_rslora_with_8bit_adam_train(variant: dict, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = train(_spec(tiny_gpt2, gsm8k_data, tmp_path / "ckpt", max_steps=20, **variant))
    rec = json.loads((out / "harness_train.json").read_text())
    losses = [v for _, v in rec["loss_curve"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["use_dora"] == variant.get("use_dora", False)
    assert cfg["use_rslora"] == variant.get("use_rslora", False)
    assert rec["hyperparameters"]["optimizer"] == variant.get("optimizer", "adamw")
    if "use_dora" in variant:  # DoRA saves its magnitude vectors
        assert any("lora_magnitude_vector" in k for k in load_file(str(out / "adapter_model.safetensors")))
