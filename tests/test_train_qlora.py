"""QLoRA: LoRA gradients through NF4 weights equal those of an fp32 model built from the dequantised weights,
before and after an evaluation pass (the avx512_bf16 repack trap), and a QLoRA run trains and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.evaluate import evaluate_task, load_tasks
from harness.models.causal import CausalLM
from harness.models.loading import ModelSpec, Variant, disable_avx512bf16_repack, load_base
from harness.task import TaskConfig
from harness.train.sft import SFTData
from harness.train.spec import TrainSpec
from harness.train.trainer import train, wrap_model
from tasks.gsm8k import GSM8K

bnb = pytest.importorskip("bitsandbytes")
torch.set_num_threads(1)


def _lora_grads(model, batch, data) -> dict[str, torch.Tensor]:  # noqa: ANN001
    model.zero_grad(set_to_none=True)
    loss = data.loss(model, batch) / data.count(batch)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n}


def _rel_err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    da = torch.cat([a[k].flatten() for k in a])
    db = torch.cat([b[k].flatten() for k in a])
    return float((da - db).norm() / db.norm())


def test_qlora_gradients_match_dequantised_fp32_before_and_after_eval(tiny_llama: Path, gsm8k_data: Path) -> None:
    spec = TrainSpec(model=str(tiny_llama), task="gsm8k", output_dir=Path("unused"), method="qlora", r=4, alpha=8,
                     dropout=0.0, target_modules="all-linear")
    torch.manual_seed(0)
    q_base, tok, _, ident = load_base(ModelSpec(model=str(tiny_llama), load_in_4bit=True))
    n4 = disable_avx512bf16_repack(q_base)
    assert n4 > 0
    # the fp32 twin: same checkpoint, each 4-bit weight replaced by its dequantised value
    ref_base, _, _, _ = load_base(ModelSpec(model=str(tiny_llama)))
    ref_modules = dict(ref_base.named_modules())
    with torch.no_grad():
        for name, m in q_base.named_modules():
            if isinstance(m, bnb.nn.Linear4bit):
                w = bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state).float()
                ref_modules[name].weight.copy_(w)
    qlora = wrap_model(q_base, "causal", spec)
    ref = wrap_model(ref_base, "causal", TrainSpec(**{**spec.__dict__, "method": "lora"}))
    # non-zero B so every LoRA matrix gets a gradient; identical LoRA weights in both models
    with torch.no_grad():
        q_params = dict(qlora.named_parameters())
        for n, p in ref.named_parameters():
            if "lora_B" in n:
                q_params[n].normal_(0, 0.05)
            if "lora_" in n:
                p.copy_(q_params[n].float())
    data = SFTData(GSM8K(TaskConfig(data_dir=gsm8k_data)).train_examples()[:4], tok, max_length=96)
    batch = data.collate(data.features)
    qlora.train()
    ref.train()
    before = _rel_err(_lora_grads(qlora, batch, data), _lora_grads(ref, batch, data))
    assert before < 1e-3

    # an evaluation pass through the harness (generation in eval mode), then gradients again
    (task, docs, dhash), = load_tasks(["gsm8k"], TaskConfig(data_dir=gsm8k_data, limit=2, max_new_tokens=4))
    qlora.eval()
    disable_avx512bf16_repack(qlora)
    variant = Variant("q", CausalLM(qlora, tok, ident, ModelSpec(model=str(tiny_llama), batch_size=2)), ident)
    evaluate_task(variant, task, docs, dhash, None, False, True)
    qlora.train()
    after = _rel_err(_lora_grads(qlora, batch, data), _lora_grads(ref, batch, data))
    assert after < 1e-3, (before, after)


def test_qlora_run_trains_evaluates_and_saves(tiny_llama: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    from harness.evaluate import RunSpec, run

    out = train(TrainSpec(model=str(tiny_llama), task="gsm8k", output_dir=tmp_path / "q", data_dir=gsm8k_data,
                          method="qlora", r=8, alpha=16, target_modules="q_proj,k_proj,v_proj,o_proj", lr=5e-3,
                          optimizer="paged_adamw_8bit", batch_size=1, grad_accum=4, max_steps=8, eval_every=4,
                          eval_limit=2, eval_max_new_tokens=4, metric="pass@1_flexible", max_length=96,
                          train_limit=40, quiet=True))
    rec = json.loads((out / "harness_train.json").read_text())
    assert rec["method"] == "qlora" and rec["base"]["quantization"] == "nf4-dq"
    assert [e["step"] for e in rec["evals"]] == [4, 8]
    losses = [v for _, v in rec["loss_curve"]]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])  # learning through 4-bit weights, eval passes in between
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    paths = run(RunSpec(model=ModelSpec(model=str(tiny_llama), adapters=[str(out)], load_in_4bit=True, batch_size=4),
                        tasks=["gsm8k"], task_cfg=TaskConfig(data_dir=gsm8k_data, limit=2, max_new_tokens=4),
                        output_dir=tmp_path / "res", run_name="q", quiet=True))
    assert json.loads(paths[0].read_text())["model"]["quantization"] == "nf4-dq"
