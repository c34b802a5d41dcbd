"""`harness forgetting`: evaluate the base and each adapter on the forgetting suite (and a target task), then report.

The base is loaded once and every adapter applied in turn (as `harness run --with-base`); the report is then
computed from the run directories' samples files alone, which is also what `--from-runs` does without a model.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from harness.cli import QuietOpt
from harness.errors import HarnessError
from harness.models.loading import ModelSpec
from harness.options import check_positive, model_options


@model_options(model_required=False, with_base=False, kind=False)
def forgetting(
    model: ModelSpec | None,
    target: Annotated[str | None, typer.Option(help="Target task the adapters were trained for (e.g. gsm8k).")] = None,
    target_metric: Annotated[str | None, typer.Option(help="Metric of the target task (default: its first).")] = None,
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated suite tasks.")] =
        "hellaswag,winogrande,arc_challenge,arc_easy",
    limit: Annotated[int | None, typer.Option("--limit", "-l", help="Evaluate the first N rows of each task.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Local data in official layouts (see README).")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where runs and the report go.")] = Path("results"),
    run_name: Annotated[str | None, typer.Option(help="Run name (default: forgetting-<model>-<timestamp>).")] = None,
    from_runs: Annotated[list[Path] | None, typer.Option(
        "--from-runs", help="Rebuild the report from run directories (first = base), without a model.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the runs.")] = 1234,
    resume: Annotated[bool, typer.Option(help="Reuse answers recorded by an earlier run.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Suite scores of the base and each adapter, change vs base with paired tests, and the target gain (Markdown, JSON, PNG)."""
    from harness.forgetting import build_report, write_report
    from harness.registry import parse_task_list

    suite = parse_task_list(tasks)
    if target in suite:
        suite.remove(target)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if from_runs:
        if model is not None:
            raise HarnessError("--from-runs rebuilds a report from existing runs: drop --model / --adapter")
        if len(from_runs) < 2:
            raise HarnessError("--from-runs: give the base run directory, then at least one adapter run directory")
        for d in from_runs:
            if not (d / "results.json").exists():
                raise HarnessError(f"--from-runs {d}: no results.json there")
        dirs = list(from_runs)
        out = output_dir / (run_name or f"forgetting-{stamp}")
    else:
        from harness.evaluate import RunSpec, run
        from harness.models.loading import short_name
        from harness.task import TaskConfig

        if model is None:
            raise HarnessError("--model is required (or --from-runs to rebuild a report)")
        if not model.adapters:
            raise HarnessError("--adapter: give at least one adapter to compare with the base")
        check_positive(limit, "--limit")
        if data_dir is not None and not data_dir.is_dir():
            raise HarnessError(f"--data-dir {data_dir}: not a directory")
        name = run_name or f"forgetting-{short_name(model.model)}-{stamp}"
        spec = RunSpec(
            model=replace(model, with_base=True, kind="causal"),
            tasks=suite + ([target] if target else []), task_cfg=TaskConfig(seed=seed, limit=limit, data_dir=data_dir),
            output_dir=output_dir, run_name=name, resume=resume, quiet=quiet)
        dirs = [p.parent for p in run(spec, argv=sys.argv)]
        out = output_dir / f"{name}__report"
    report = build_report(dirs[0], dirs[1:], suite, target, target_metric, seed=seed)
    for p in write_report(report, out):
        print(f"wrote {p}", file=sys.stderr)
    from harness.forgetting import render_markdown

    sys.stdout.write(render_markdown(report))


def register(app: typer.Typer) -> None:
    app.command()(forgetting)
