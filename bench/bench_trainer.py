"""Trainer throughput: the bundled trainer against a plain transformers Trainer + peft loop, same run.

Same model (a small GPT-2 built from a config), same tokenised GSM8K-format examples (prompt masked),
same LoRA config, batch size, optimizer, schedule and number of steps; one epoch each, so both see
exactly the same real (non-pad) tokens. Throughput = real tokens / training seconds (model loading and
saving excluded for both). Runs alternate; the report gives best-of for each and the median ratio of back-to-back pairs
(robust on a shared machine). Target: ratio >= 1.

    .venv/bin/python bench/bench_trainer.py [--examples 1024] [--batch-size 8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def hf_trainer_run(model_dir: Path, features: list[dict], collate, args: argparse.Namespace, out: Path) -> float:  # noqa: ANN001
    """Seconds the transformers Trainer spends in train() for one epoch over the features."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model = get_peft_model(model, LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.0, target_modules=["c_attn"],
                                             task_type="CAUSAL_LM"))

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(features)

        def __getitem__(self, i: int) -> dict:
            return features[i]

    targs = TrainingArguments(output_dir=str(out), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
                              learning_rate=2e-4, lr_scheduler_type="linear", max_grad_norm=1.0, weight_decay=0.0,
                              optim="adamw_torch", logging_steps=10_000, save_strategy="no", report_to=[],
                              use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0,
                              remove_unused_columns=False)
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), data_collator=collate)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def harness_run(model_dir: Path, data_dir: Path, args: argparse.Namespace, out: Path) -> tuple[float, int]:
    from harness.train.spec import TrainSpec
    from harness.train.trainer import train

    spec = TrainSpec(model=str(model_dir), task="gsm8k", output_dir=out, data_dir=data_dir, method="lora", r=args.r,
                     alpha=2 * args.r, dropout=0.0, target_modules="c_attn", lr=2e-4, batch_size=args.batch_size,
                     epochs=1.0, scheduler="linear", max_grad_norm=1.0, optimizer="adamw", max_length=512, quiet=True)
    rec = json.loads((train(spec) / "harness_train.json").read_text())
    return rec["train_time_s"], rec["tokens"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from harness.task import TaskConfig
    from harness.testing.tiny import build_causal_lm, train_tokenizer, write_gsm8k_data
    from harness.train.sft import SFTData
    from tasks.gsm8k import GSM8K

    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    data_dir = write_gsm8k_data(work / "data", n_train=args.examples, n_test=10)
    examples = GSM8K(TaskConfig(data_dir=data_dir)).train_examples()
    tok = train_tokenizer([e["prompt"] + e["target"] for e in examples], vocab_size=1024)
    model_dir = build_causal_lm(work / "model", tok, d_model=args.d_model, n_layer=args.layers, n_head=4)
    tok = AutoTokenizer.from_pretrained(model_dir)
    data = SFTData(examples, tok, max_length=512)  # the very features both trainers see
    real_tokens = sum(len(f["input_ids"]) for f in data.features)

    ours, theirs = [], []
    for i in range(args.repeats):
        secs, tokens = harness_run(model_dir, data_dir, args, work / f"harness-{i}")
        assert tokens == real_tokens, (tokens, real_tokens)
        ours.append(secs)
        theirs.append(hf_trainer_run(model_dir, data.features, data.collate, args, work / f"hf-{i}"))
    best_ours, best_theirs = min(ours), min(theirs)
    tps_ours, tps_theirs = real_tokens / best_ours, real_tokens / best_theirs
    steps = -(-args.examples // args.batch_size)
    print(f"trainer throughput: GPT-2 d={args.d_model} x{args.layers} layers, LoRA r={args.r} on c_attn, "
          f"{args.examples} examples, batch {args.batch_size}, {steps} steps, {real_tokens} real tokens, "
          f"{args.threads} threads, best of {args.repeats}")
    print(f"  harness trainer          : {best_ours:7.2f} s  {tps_ours:9.0f} tokens/s   (runs: "
          + ", ".join(f"{s:.2f}" for s in ours) + ")")
    print(f"  transformers Trainer+peft: {best_theirs:7.2f} s  {tps_theirs:9.0f} tokens/s   (runs: "
          + ", ".join(f"{s:.2f}" for s in theirs) + ")")
    ratio = tps_ours / tps_theirs
    # each pair ran back to back, so it saw the same machine load: the median pair ratio is the robust number
    pairs = sorted(t / o for o, t in zip(ours, theirs))
    median = pairs[len(pairs) // 2] if len(pairs) % 2 else (pairs[len(pairs) // 2 - 1] + pairs[len(pairs) // 2]) / 2
    print(f"  ratio harness / Trainer  : {ratio:.2f}x best-of, {median:.2f}x median of back-to-back pairs  "
          f"({'OK, not slower' if median >= 1.0 else 'SLOWER than the target'})")


if __name__ == "__main__":
    main()
