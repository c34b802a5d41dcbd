"""Leaderboard: one row per (model, adapter), one column per task metric, from results files only.

Bounded metrics (every value within [-1, 1]) are shown as percentages, as papers report them;
NIST, CIDEr and other unbounded scores are shown as they are. Each adapter row shows its
change against the base row of the same base model and quantisation: `41.2 (+12.0)`.
With `--significance` each change also gets a paired test on the per-sample scores of the documents
both rows scored (harness/reports/significance.py), shown as a marker: `41.2 (+12.0)**`.
Checkpoints of one training run (`--checkpoints`) also appear as a trajectory: metric against step.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.errors import HarnessError
from harness.results import find_results, read_results

UNSCALED = ("nist", "cider", "loss", "perplexity", "elo", "rating", "time", "tokens")


def _base_key(model: dict[str, Any]) -> tuple[Any, ...]:
    return (model.get("base"), model.get("base_hash") or model.get("revision"), model.get("quantization"),
            model.get("dtype"))


def _row_name(res: dict[str, Any]) -> str:
    from harness.reports.checkpoints import checkpoint_label

    base = Path(str(res["model"].get("base", "?"))).name
    quant = res["model"].get("quantization")
    name = base + (f" [{quant}]" if quant else "")
    adapter = res["model"].get("adapter")
    if adapter and res["model"].get("adapter_path"):
        adapter = checkpoint_label(Path(str(res["model"]["adapter_path"]))) or adapter  # run@stepN for a checkpoint
    return f"{name} + {adapter}" if adapter else f"{name} (base)"


def _checked_tasks(res: dict[str, Any], path: Path) -> dict[str, Any]:
    """The results file's tasks, each with metrics {name: {"value": number, ...}}; anything else names the file."""
    tasks = res["tasks"]
    if not isinstance(tasks, dict) or not isinstance(res["model"], dict):
        raise HarnessError(f"{path}: 'tasks' and 'model' must be objects; not a harness results file")
    for task, entry in tasks.items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict):
            raise HarnessError(f"{path}: task {task}: 'metrics' must be an object of metric objects")
        for name, m in metrics.items():
            if not isinstance(m, dict) or not isinstance(m.get("value"), (int, float)) or isinstance(m.get("value"), bool):
                raise HarnessError(f"{path}: task {task} metric {name}: expected {{\"value\": number, \"stderr\": ...}}, "
                                   f"got {json.dumps(m)[:60]}")
            if m.get("stderr") is not None and not isinstance(m["stderr"], (int, float)):
                raise HarnessError(f"{path}: task {task} metric {name}: stderr must be a number or null")
    return tasks


def _roots(root: Path | Sequence[Path]) -> list[Path]:
    return [root] if isinstance(root, Path) else list(root)


def collect(root: Path | Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (latest result per model variant and task, with the run directory each came from) and the metric columns."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    roots = _roots(root)
    paths = sorted({p.resolve(): p for r in roots for p in find_results(r)}.values())
    for path in paths:
        res = read_results(path)
        if "tasks" not in res or "model" not in res:
            continue
        key = (_base_key(res["model"]), res["model"].get("adapter_hash"))
        row = latest.setdefault(key, {"name": _row_name(res), "model": res["model"], "cells": {}, "created": {},
                                      "runs": {}})
        for task, entry in _checked_tasks(res, path).items():
            for metric, m in entry["metrics"].items():
                col = f"{task}/{metric}"
                if res.get("created", "") >= row["created"].get(col, ""):
                    row["cells"][col] = {**m, "higher_is_better": entry.get("higher_is_better", True)}
                    row["created"][col] = res.get("created", "")
                    row["runs"][col] = path.parent
    if not latest:
        raise HarnessError(f"{', '.join(map(str, roots))}: no results.json files found")
    columns: list[str] = []
    for row in latest.values():
        for col in row["cells"]:
            if col not in columns:
                columns.append(col)
    rows = sorted(latest.values(), key=lambda r: (str(_base_key(r["model"])), r["model"].get("adapter") is not None,
                                                   r["name"]))
    return rows, columns


def _scale(column: str, rows: list[dict[str, Any]]) -> float:
    if any(u in column.split("/", 1)[-1].lower() for u in UNSCALED):  # the metric name, not the task name
        return 1.0
    values = [r["cells"][column]["value"] for r in rows if column in r["cells"] and r["cells"][column]["value"] is not None]
    return 100.0 if values and all(abs(v) <= 1.0 for v in values) else 1.0


def significance(column: str, row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """The paired test of one adapter cell against its base cell, from both runs' per-sample scores (None when the
    runs kept no per-sample values of the metric, e.g. corpus-level BLEU, or share no document)."""
    from harness.reports.samples import metric_by_doc
    from harness.reports.significance import marker, pair_by_doc, paired_test

    task, metric = column.rsplit("/", 1)
    b = metric_by_doc(base["runs"][column], task, metric)
    a = metric_by_doc(row["runs"][column], task, metric)
    if not b or not a:
        return None
    result = paired_test(*pair_by_doc(b, a))
    if result is None:
        return None
    return {**result.to_json(), "marker": marker(result.p_value)}


def _cell(c: str, r: dict[str, Any], base: dict[str, Any] | None, scale: float, with_test: bool) -> dict[str, Any] | None:
    m = r["cells"].get(c)
    if m is None or m["value"] is None:
        return None
    cell = {"value": m["value"] * scale, "stderr": m["stderr"] * scale if m.get("stderr") is not None else None}
    if base is not None and c in base["cells"] and base["cells"][c]["value"] is not None:
        cell["delta"] = (m["value"] - base["cells"][c]["value"]) * scale
        if with_test:
            cell["significance"] = significance(c, r, base)
    return cell


def table(root: Path | Sequence[Path], with_significance: bool = False) -> dict[str, Any]:
    """The leaderboard as data: columns, and per row each cell's value, stderr and change against its base (with
    `with_significance`, also the paired test of that change); checkpoint rows also form trajectories."""
    from harness.reports.checkpoints import trajectories

    rows, columns = collect(root)
    scales = {c: _scale(c, rows) for c in columns}
    higher = {c: next((r["cells"][c]["higher_is_better"] for r in rows if c in r["cells"]), True) for c in columns}
    bases = {_base_key(r["model"]): r for r in rows if not r["model"].get("adapter")}
    out_rows = []
    for r in rows:
        base = bases.get(_base_key(r["model"])) if r["model"].get("adapter") else None
        cells = {c: _cell(c, r, base, scales[c], with_significance) for c in columns}
        out_rows.append({"name": r["name"], "model": r["model"], "cells": cells, "base": base["name"] if base else None,
                         "runs": {c: str(d) for c, d in r["runs"].items()}})
    out = {"columns": columns, "scale": scales, "higher_is_better": higher, "rows": out_rows}
    out["trajectories"] = trajectories(out)
    return out


def _fmt(cell: dict[str, Any] | None, digits: int) -> str:
    if cell is None:
        return "–"
    text = f"{cell['value']:.{digits}f}"
    if cell.get("stderr") is not None:
        text += f" ± {cell['stderr']:.{digits}f}"
    if "delta" in cell:
        text += f" ({cell['delta']:+.{digits}f})"
        if "significance" in cell:
            sig = cell["significance"]
            text += sig["marker"] if sig else " (no per-sample scores)"
    return text


FORMATS = ("markdown", "csv", "json")


def _csv(t: dict[str, Any], with_significance: bool) -> str:
    cols = t["columns"]
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = ("p", "test") if with_significance else ()
    w.writerow(["model"] + [x for c in cols for x in (c, f"{c} stderr", f"{c} delta", *(f"{c} {e}" for e in extra))])
    for r in t["rows"]:
        line = [r["name"]]
        for c in cols:
            cell = r["cells"][c] or {}
            line += [cell.get("value", ""), cell.get("stderr", ""), cell.get("delta", "")]
            if with_significance:
                sig = cell.get("significance") or {}
                line += [sig.get("p_value", ""), sig.get("test", "")]
        w.writerow(line)
    return buf.getvalue()


def render(root: Path | Sequence[Path], fmt: str = "markdown", with_significance: bool = False) -> str:
    if fmt not in FORMATS:
        raise HarnessError(f"--format: unknown format {fmt!r} (use markdown, csv or json)")
    t = table(root, with_significance)
    cols = t["columns"]
    if fmt == "json":
        return json.dumps(t, indent=2, default=str) + "\n"
    if fmt == "csv":
        return _csv(t, with_significance)
    head = "| model | " + " | ".join(c + (" (%)" if t["scale"][c] == 100 else "") for c in cols) + " |"
    lines = ["# Leaderboard", "", head, "|" + "---|" * (len(cols) + 1)]
    for r in t["rows"]:
        lines.append("| " + r["name"] + " | " + " | ".join(_fmt(r["cells"][c], 1 if t["scale"][c] == 100 else 3)
                                                         for c in cols) + " |")
    lines += ["", "Values are mean ± standard error; (±x) is the change against the base row of the same model."]
    if with_significance:
        from harness.reports.significance import LEGEND

        lines[-1] += f" Markers: {LEGEND}."
    if t["trajectories"]:
        from harness.reports.checkpoints import markdown

        lines += ["", markdown(t["trajectories"], t["scale"]).rstrip("\n")]
    from harness.forgetting import leaderboard_section  # forgetting reports (forgetting.json) under root, if any

    for r in _roots(root):
        section = leaderboard_section(r)
        if section:
            lines += ["", section.rstrip("\n")]
    return "\n".join(lines) + "\n"


def leaderboard(
    results_dir: Annotated[list[Path] | None, typer.Argument(
        help="Directories searched for results.json files (default: results).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown, csv or json.")] = "markdown",
    with_significance: Annotated[bool, typer.Option(
        "--significance", help="Paired test of each change against the base (McNemar / paired bootstrap), as markers.")
    ] = False,
) -> None:
    """One row per (model, adapter), one column per task metric, ± stderr and change against the base."""
    from harness.results import atomic_write_text

    text = render(results_dir or [Path("results")], fmt, with_significance)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
        print(f"wrote {output}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard)
