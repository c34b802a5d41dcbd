"""`harness sweep`: train and evaluate every point of a hyper-parameter grid; leaderboard and metric plots.

Layout of -o DIR: points/<point>/ (checkpoints), results/<point>/results.json (evaluations, and
results/base/), leaderboard.md, sweep.json, sweep.csv, sweep.png. A point counts as finished when
both its harness_train.json and its results.json exist, so a re-run with --resume (after a change to
the grid, or a killed sweep) only does what is missing; an interrupted training resumes from its last
checkpoint. Without --resume or --overwrite, a -o that already holds a sweep is refused.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results import atomic_write_json, atomic_write_text, header, read_results
from harness.train.outdir import check_sweep_dir, clear
from harness.train.spec import ALIASES, TrainSpec


def parse_grid(text: str) -> list[dict[str, str]]:
    """'r=1,2,4;lr=1e-4,2e-4' -> every combination, in order, as {option: value-string}."""
    axes: list[tuple[str, list[str]]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise HarnessError(f"--grid {part.strip()!r}: expected KEY=V1,V2,...")
        key, vals = part.split("=", 1)
        key = key.strip()
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not key or not values:
            raise HarnessError(f"--grid {part.strip()!r}: expected KEY=V1,V2,...")
        if any(ALIASES.get(k, k) == ALIASES.get(key, key) for k, _ in axes):
            raise HarnessError(f"--grid: option {key!r} appears twice")
        axes.append((key, values))
    if not axes:
        raise HarnessError('--grid: empty; give e.g. "r=1,2,4;lr=1e-4,2e-4"')
    return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


def point_name(point: dict[str, str]) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items()).replace("/", "-").replace(" ", "")


def _task_cfg(spec: TrainSpec, limit: int | None) -> Any:
    from harness.task import TaskConfig

    return TaskConfig(data_dir=spec.data_dir, limit=limit, chat_template=spec.chat_template,
                      max_new_tokens=spec.eval_max_new_tokens, options=dict(spec.task_options))


def _evaluate(spec: TrainSpec, results: Path, name: str, limit: int | None, batch_size: int,
              checkpoint: Path | None) -> Path:
    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec

    engine: dict[str, Any] = {"backend": spec.eval_backend, "backend_options": dict(spec.eval_backend_options)}
    if checkpoint is not None and spec.method == "full":
        mspec = ModelSpec(model=str(checkpoint), kind=spec.model_kind, dtype=spec.dtype, device=spec.device,
                          batch_size=batch_size, **engine)
    else:
        mspec = ModelSpec(model=spec.model, adapters=[str(checkpoint)] if checkpoint else [], kind=spec.model_kind,
                          load_in_4bit=spec.method == "qlora", bnb_4bit_compute_dtype=spec.bnb_4bit_compute_dtype,
                          dtype=spec.dtype, device=spec.device, batch_size=batch_size, **engine)
    return run(RunSpec(model=mspec, tasks=[spec.task], task_cfg=_task_cfg(spec, limit), output_dir=results,
                       run_name=name, quiet=spec.quiet), argv=None)[0]


def run_sweep(base: TrainSpec, grid: str, out: Path, limit: int | None = None, eval_batch_size: int = 8,
              with_base: bool = True, alpha_ratio: float | None = None, argv: list[str] | None = None,
              resume: bool = False, overwrite: bool = False) -> Path:
    """Run every missing point; write the summaries; return the leaderboard path.

    Everything is checked before anything is written: the grid, the model's config, the task and -o
    (an earlier sweep there is continued only with `resume`, replaced only with `overwrite`). The base
    model is evaluated last, so a point that fails to start (a bad --target-modules) leaves -o as it was.
    """
    from harness.train.trainer import FINISHED, check_metric, resolve

    for flag, value in (("--limit", limit), ("--eval-batch-size", eval_batch_size), ("--alpha-ratio", alpha_ratio)):
        if value is not None and value <= 0:
            raise HarnessError(f"{flag}: must be > 0, got {value}")
    parse_grid(grid)
    _, _, task = resolve(base)
    base = replace(base, metric=check_metric(base, task))  # as train() records it, so --resume can compare
    specs = point_specs(base, grid, out, alpha_ratio)
    must_clear = check_sweep_dir(out, resume, overwrite)
    if resume:
        check_resumable(out, base, specs)
    if must_clear:
        clear(out)
    results = out / "results"
    rows: list[dict[str, Any]] = []
    for i, (name, point, spec) in enumerate(specs, 1):
        res_path = _run_point(spec, results / name, f"[{i}/{len(specs)}] {name}", limit, eval_batch_size)
        rows.append(_row(name, point, spec.output_dir / FINISHED, res_path, spec.task))
    if with_base and not (results / "base" / "results.json").exists():
        _log("evaluating the base model", base.quiet)
        _evaluate(base, results, "base", limit, eval_batch_size, None)
    base_metrics = None
    if (results / "base" / "results.json").exists():
        base_metrics = _metrics(read_results(results / "base" / "results.json"), base.task)
    return _write_summary(out, base, grid, rows, base_metrics, argv)


Point = tuple[str, dict[str, str], TrainSpec]  # name, grid values, the point's full spec


def point_specs(base: TrainSpec, grid: str, out: Path, alpha_ratio: float | None) -> list[Point]:
    """(name, grid values, spec) of every point, each validated: a bad value fails before anything trains."""
    specs = []
    for p in parse_grid(grid):
        s = base.with_overrides(p, "--grid")
        if alpha_ratio is not None and not any(ALIASES.get(k, k) == "alpha" for k in p):
            s = replace(s, alpha=alpha_ratio * s.r)
        name = point_name(p)
        specs.append((name, p, replace(s, output_dir=out / "points" / name, resume=False, overwrite=False)))
    return specs


def check_resumable(out: Path, base: TrainSpec, specs: list[Point]) -> None:
    """--resume continues the same sweep: same model and task, and each finished point trained as it would be now."""
    from harness.train.trainer import FINISHED

    if (out / "sweep.json").exists():
        old = json.loads((out / "sweep.json").read_text())
        for key in ("model", "task"):
            if old.get(key) != getattr(base, key):
                raise HarnessError(f"--resume: -o {out} is a sweep with {key} {old.get(key)!r}, not {getattr(base, key)!r}; "
                                   "pass --overwrite to replace it or use another directory")
    for name, _, spec in specs:
        record = spec.output_dir / FINISHED
        if not record.exists():
            continue  # unfinished points resume from their checkpoints, which train() checks the same way
        saved = json.loads(record.read_text()).get("hyperparameters", {})
        now = json.loads(json.dumps(spec.hyperparameters(), default=str))
        diff = [k for k in now if saved.get(k) != now[k]]
        if diff:
            k = diff[0]
            raise HarnessError(f"--resume: point {name} in {out} was trained with {k}={saved.get(k)!r}, now {now[k]!r}; "
                               "pass the same options, or --overwrite to start again")


def _run_point(spec: TrainSpec, results: Path, label: str, limit: int | None, batch_size: int) -> Path:
    """Train (or resume) and evaluate one point unless done earlier; returns its results.json."""
    from harness.train.loop import checkpoints
    from harness.train.trainer import FINISHED, train

    ck = spec.output_dir
    res_path = results / "results.json"
    if (ck / FINISHED).exists() and res_path.exists():
        _log(f"{label}: finished earlier, skipped", spec.quiet)
        return res_path
    if not (ck / FINISHED).exists():
        _log(f"{label}: training", spec.quiet)
        found = bool(checkpoints(ck)) if ck.is_dir() else False
        train(replace(spec, resume=found, overwrite=not found))  # leftovers of a run killed before a checkpoint go
    _log(f"{label}: evaluating", spec.quiet)
    return _evaluate(spec, results.parent, results.name, limit, batch_size, ck)


def _metrics(res: dict[str, Any], task: str) -> dict[str, float]:
    entry = res["tasks"].get(task) or next(iter(res["tasks"].values()))
    return {m: v["value"] for m, v in entry["metrics"].items()}


def _row(name: str, point: dict[str, str], train_json: Path, res_path: Path, task: str) -> dict[str, Any]:
    tr = json.loads(train_json.read_text())
    return {"point": name, "params": point, "metrics": _metrics(read_results(res_path), task),
            "final_loss": tr["loss_curve"][-1][1] if tr["loss_curve"] else None,
            "trainable_params": tr["trainable_params"], "train_time_s": tr["train_time_s"],
            "checkpoint": str(train_json.parent), "results": str(res_path)}


def _write_summary(out: Path, base: TrainSpec, grid: str, rows: list[dict[str, Any]],
                   base_metrics: dict[str, float] | None, argv: list[str] | None) -> Path:
    from harness.leaderboard import render

    metric = base.metric or (next(iter(rows[0]["metrics"])) if rows and rows[0]["metrics"] else None)
    atomic_write_json(out / "sweep.json", {**header(), "grid": grid, "task": base.task, "model": base.model,
                                           "metric": metric, "base": base_metrics, "points": rows,
                                           "command": argv or sys.argv})
    keys = list(rows[0]["params"]) if rows else []
    metric_names = list(rows[0]["metrics"]) if rows else []
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["point", *keys, *metric_names, "final_loss", "trainable_params", "train_time_s"])
    for r in rows:
        w.writerow([r["point"], *[r["params"][k] for k in keys], *[r["metrics"].get(m) for m in metric_names],
                    r["final_loss"], r["trainable_params"], r["train_time_s"]])
    atomic_write_text(out / "sweep.csv", buf.getvalue())
    if metric is not None:
        plot(rows, keys, metric, base_metrics.get(metric) if base_metrics else None, out / "sweep.png",
             f"{base.task} · {Path(base.model).name} · {base.method}")
    lb = out / "leaderboard.md"
    atomic_write_text(lb, render(out / "results"))
    return lb


def _num(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def plot(rows: list[dict[str, Any]], keys: list[str], metric: str, base_value: float | None, path: Path,
         title: str) -> None:
    """One panel per numeric grid axis (rank, learning rate, ...): metric against it, one line per other setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_keys = [k for k in keys if all(_num(r["params"][k]) is not None for r in rows)] or ["point"]
    fig, axs = plt.subplots(1, len(axes_keys), figsize=(5.5 * len(axes_keys), 4), squeeze=False)
    for ax, key in zip(axs[0], axes_keys):
        if key == "point":
            ax.bar(range(len(rows)), [r["metrics"].get(metric, float("nan")) for r in rows])
            ax.set_xticks(range(len(rows)), [r["point"] for r in rows], rotation=45, ha="right", fontsize=7)
        else:
            others = [k for k in keys if k != key]
            groups: dict[tuple[str, ...], list[tuple[float, float]]] = {}
            for r in rows:
                g = tuple(r["params"][k] for k in others)
                groups.setdefault(g, []).append((_num(r["params"][key]) or 0.0, r["metrics"].get(metric, float("nan"))))
            for g, pts in groups.items():
                pts.sort()
                label = ", ".join(f"{k}={v}" for k, v in zip(others, g)) or None
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            xs = [_num(r["params"][key]) or 0.0 for r in rows]  # key is numeric in every row (axes_keys)
            if min(xs) > 0 and max(xs) / min(xs) >= 8:
                ax.set_xscale("log", base=2 if key in ("r", "rank") else 10)
            ax.set_xlabel(key)
        if base_value is not None:
            ax.axhline(base_value, color="grey", linestyle="--", linewidth=1, label="base")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr)
