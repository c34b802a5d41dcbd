"""`harness demo`: the main job end to end, offline, on data and a model the project makes itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its data and models.")] = Path("demo"),
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o")] = Path("results"),
    leaderboard_path: Annotated[Path, typer.Option("--leaderboard")] = Path("LEADERBOARD.md"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write GSM8K-format data and a tiny causal LM, evaluate it, and write the leaderboard."""
    from harness.evaluate import RunSpec, run
    from harness.leaderboard import render
    from harness.models.loading import ModelSpec
    from harness.results import atomic_write_text
    from harness.task import TaskConfig
    from harness.tiny import tiny_gsm8k_model, write_gsm8k_data

    data = write_gsm8k_data(workdir / "data")
    base = workdir / "models" / "tiny-gpt2"
    if not (base / "config.json").exists():
        tiny_gsm8k_model(base, data)
    print(f"demo data in {data}, base model in {base}", file=sys.stderr)
    spec = RunSpec(model=ModelSpec(model=str(base), batch_size=16), tasks=["gsm8k"],
                   task_cfg=TaskConfig(data_dir=data, max_new_tokens=48), output_dir=output_dir, run_name="demo-base",
                   quiet=quiet)
    for p in run(spec):
        print(f"wrote {p}", file=sys.stderr)
    atomic_write_text(leaderboard_path, render(output_dir))
    print(render(output_dir))


def register(app: typer.Typer) -> None:
    app.command()(demo)
