"""Leaderboard: one row per (model, adapter), one column per task metric, from results files only.

Bounded metrics (every value within [-1, 1]) are shown as percentages, as papers report them;
NIST, CIDEr and other unbounded scores are shown as they are. Each adapter row shows its
change against the base row of the same base model and quantisation: `41.2 (+12.0)`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results import find_results, read_results

UNSCALED = ("nist", "cider", "loss", "perplexity", "elo", "rating", "time", "tokens")


def _base_key(model: dict[str, Any]) -> tuple[Any, ...]:
    return (model.get("base"), model.get("base_hash") or model.get("revision"), model.get("quantization"),
            model.get("dtype"))


def _row_name(res: dict[str, Any]) -> str:
    base = Path(str(res["model"].get("base", "?"))).name
    quant = res["model"].get("quantization")
    name = base + (f" [{quant}]" if quant else "")
    adapter = res["model"].get("adapter")
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


def collect(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (latest result per model variant and task) and the ordered metric columns."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in find_results(root):
        res = read_results(path)
        if "tasks" not in res or "model" not in res:
            continue
        key = (_base_key(res["model"]), res["model"].get("adapter_hash"))
        row = latest.setdefault(key, {"name": _row_name(res), "model": res["model"], "cells": {}, "created": {}})
        for task, entry in _checked_tasks(res, path).items():
            for metric, m in entry["metrics"].items():
                col = f"{task}/{metric}"
                if res.get("created", "") >= row["created"].get(col, ""):
                    row["cells"][col] = {**m, "higher_is_better": entry.get("higher_is_better", True)}
                    row["created"][col] = res.get("created", "")
    if not latest:
        raise HarnessError(f"{root}: no results.json files found")
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


def table(root: Path) -> dict[str, Any]:
    """The leaderboard as data: columns, and per row each cell's value, stderr and change against its base."""
    rows, columns = collect(root)
    scales = {c: _scale(c, rows) for c in columns}
    bases = {_base_key(r["model"]): r for r in rows if not r["model"].get("adapter")}
    out_rows = []
    for r in rows:
        base = bases.get(_base_key(r["model"])) if r["model"].get("adapter") else None
        cells = {}
        for c in columns:
            m = r["cells"].get(c)
            if m is None or m["value"] is None:
                cells[c] = None
                continue
            s = scales[c]
            cell = {"value": m["value"] * s, "stderr": m["stderr"] * s if m.get("stderr") is not None else None}
            if base is not None and c in base["cells"] and base["cells"][c]["value"] is not None:
                cell["delta"] = (m["value"] - base["cells"][c]["value"]) * s
            cells[c] = cell
        out_rows.append({"name": r["name"], "model": r["model"], "cells": cells})
    return {"columns": columns, "scale": scales, "rows": out_rows}


def _fmt(cell: dict[str, Any] | None, digits: int) -> str:
    if cell is None:
        return "–"
    text = f"{cell['value']:.{digits}f}"
    if cell.get("stderr") is not None:
        text += f" ± {cell['stderr']:.{digits}f}"
    if "delta" in cell:
        text += f" ({cell['delta']:+.{digits}f})"
    return text


FORMATS = ("markdown", "csv", "json")


def render(root: Path, fmt: str = "markdown") -> str:
    if fmt not in FORMATS:
        raise HarnessError(f"--format: unknown format {fmt!r} (use markdown, csv or json)")
    t = table(root)
    cols = t["columns"]
    if fmt == "json":
        return json.dumps(t, indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["model"] + [x for c in cols for x in (c, f"{c} stderr", f"{c} delta")])
        for r in t["rows"]:
            line = [r["name"]]
            for c in cols:
                cell = r["cells"][c] or {}
                line += [cell.get("value", ""), cell.get("stderr", ""), cell.get("delta", "")]
            w.writerow(line)
        return buf.getvalue()
    head = "| model | " + " | ".join(c + (" (%)" if t["scale"][c] == 100 else "") for c in cols) + " |"
    lines = ["# Leaderboard", "", head, "|" + "---|" * (len(cols) + 1)]
    for r in t["rows"]:
        lines.append("| " + r["name"] + " | " + " | ".join(_fmt(r["cells"][c], 1 if t["scale"][c] == 100 else 3)
                                                         for c in cols) + " |")
    lines += ["", "Values are mean ± standard error; (±x) is the change against the base row of the same model."]
    from harness.forgetting import leaderboard_section  # forgetting reports (forgetting.json) under root, if any

    section = leaderboard_section(root)
    if section:
        lines += ["", section.rstrip("\n")]
    return "\n".join(lines) + "\n"
