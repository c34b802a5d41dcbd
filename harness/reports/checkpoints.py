"""Checkpoint trajectories: a training run's `checkpoint-<step>/` folders evaluated as variants, metric against step.

`--checkpoints all|last|every:N` with `--adapter DIR` expands DIR into one adapter per checkpoint, in step order
(every:N keeps the steps that are multiples of N, and always the last checkpoint). The leaderboard and the HTML
report group the evaluated checkpoints of one training directory into a trajectory, mark each metric's best
checkpoint, and put the trainer's loss curve (harness_train.json, or the newest checkpoint's trainer_state.json
for an unfinished run) beside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

STEP = re.compile(r"^checkpoint-(\d+)$")
TRAIN_RECORD = "harness_train.json"
FLAG = "--checkpoints"


def checkpoint_dirs(train_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-<step> folder, in step order."""
    found = []
    for p in train_dir.iterdir() if train_dir.is_dir() else []:
        m = STEP.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def parse_selection(text: str) -> tuple[str, int | None]:
    """("all" | "last" | "every", N); anything else names the flag."""
    text = text.strip()
    if text in ("all", "last"):
        return text, None
    if text.startswith("every:"):
        n = text.split(":", 1)[1]
        if n.isdigit() and int(n) > 0:
            return "every", int(n)
    raise HarnessError(f"{FLAG} {text!r}: expected all, last or every:N (N > 0)")


def select(found: list[tuple[int, Path]], how: str) -> list[tuple[int, Path]]:
    kind, n = parse_selection(how)
    if kind == "all" or not found:
        return found
    if kind == "last":
        return found[-1:]
    assert n is not None
    return [(s, p) for s, p in found if s % n == 0 or (s, p) == found[-1]]


def expand_adapters(adapters: list[str], how: str | None) -> list[str]:
    """The adapter list with each DIR holding checkpoint-* folders replaced by the selected checkpoints."""
    if how is None:
        for a in adapters:
            p = Path(a)
            if p.is_dir() and not (p / "adapter_config.json").exists() and checkpoint_dirs(p):
                raise HarnessError(f"--adapter {a}: no adapter_config.json, but it holds checkpoint-<step> folders; "
                                   f"pass {FLAG} all, last or every:N to evaluate them")
        return adapters
    parse_selection(how)
    if not adapters:
        raise HarnessError(f"{FLAG} {how}: give --adapter DIR, a training run's output holding checkpoint-<step> folders")
    out: list[str] = []
    expanded = False
    for a in adapters:
        found = checkpoint_dirs(Path(a))
        if not found:
            out.append(a)  # a plain adapter next to training runs: one variant, as without the flag
            continue
        expanded = True
        for _, p in select(found, how):
            if not (p / "adapter_config.json").exists():
                raise HarnessError(f"--adapter {a}: {p.name} has no adapter_config.json (checkpoints of --method full "
                                   "keep no model weights); evaluate the finished model instead")
            out.append(str(p))
    if not expanded:
        raise HarnessError(f"{FLAG} {how}: no --adapter directory holds checkpoint-<step> folders "
                           f"(train with --save-every N to write them)")
    return out


def checkpoint_of(model: dict[str, Any]) -> tuple[Path, int] | None:
    """(training directory, step) of a results file's model identity, when its adapter is a checkpoint folder."""
    path = model.get("adapter_path")
    if not path:
        return None
    p = Path(str(path))
    m = STEP.match(p.name)
    return (p.parent, int(m.group(1))) if m else None


def checkpoint_label(path: Path) -> str | None:
    """`<training dir>@step<N>` for a checkpoint folder (a label that carries the step and the run), else None."""
    m = STEP.match(path.name)
    if not m:
        return None
    return f"{path.parent.name or 'run'}@step{m.group(1)}"


def loss_curve(train_dir: Path) -> list[list[float]]:
    """[[step, loss], ...] of the trainer: harness_train.json, or the newest checkpoint's state for a run in progress."""
    record = train_dir / TRAIN_RECORD
    try:
        if record.is_file():
            return [list(x) for x in json.loads(record.read_text(encoding="utf-8")).get("loss_curve") or []]
        found = checkpoint_dirs(train_dir)
        if found and (found[-1][1] / "trainer_state.json").is_file():
            state = json.loads((found[-1][1] / "trainer_state.json").read_text(encoding="utf-8"))
            return [list(x) for x in state.get("state", {}).get("loss_curve") or []]
    except (OSError, json.JSONDecodeError, TypeError, AttributeError):
        return []  # the trajectory is still shown, only without its loss
    return []


def loss_at(curve: list[list[float]], step: int) -> float | None:
    """The logged loss of `step` (or the last one logged before it)."""
    before = [loss for s, loss in curve if s <= step]
    return before[-1] if before else None


def _best(points: list[dict[str, Any]], col: str, higher: bool) -> int | None:
    scored = [(p["cells"][col]["value"], p["step"]) for p in points if p["cells"].get(col)]
    if not scored:
        return None
    value = max(v for v, _ in scored) if higher else min(v for v, _ in scored)
    return min(s for v, s in scored if v == value)  # the earliest step that reaches the best value


def trajectories(table: dict[str, Any]) -> list[dict[str, Any]]:
    """One trajectory per (base, training directory) among the leaderboard's rows, points in step order."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    by_name = {r["name"]: r for r in table["rows"]}
    for row in table["rows"]:
        found = checkpoint_of(row["model"])
        if found is None:
            continue
        train_dir, step = found
        key = (str(row.get("base")), str(train_dir))
        g = groups.setdefault(key, {"train_dir": str(train_dir), "name": train_dir.name, "base_row": row.get("base"),
                                    "base_name": Path(str(row["model"].get("base"))).name, "points": []})
        g["points"].append({"step": step, "row": row["name"], "cells": row["cells"]})
    out = []
    for g in groups.values():
        g["points"].sort(key=lambda p: p["step"])
        cols = [c for c in table["columns"] if any(p["cells"].get(c) for p in g["points"])]
        g["columns"] = cols
        g["best"] = {c: _best(g["points"], c, table.get("higher_is_better", {}).get(c, True)) for c in cols}
        base_row = by_name.get(g["base_row"]) if g["base_row"] else None
        g["base"] = {c: base_row["cells"][c]["value"] for c in cols if base_row and base_row["cells"].get(c)}
        g["loss"] = loss_curve(Path(g["train_dir"]))
        out.append(g)
    return out


def markdown(trajs: list[dict[str, Any]], scale: dict[str, float]) -> str:
    """The trajectories as Markdown tables: one row per checkpoint, the best value of each metric in bold."""
    lines = ["## Checkpoint trajectories", ""]
    for t in trajs:
        cols = t["columns"]
        lines += [f"### {t['base_name']}: {t['name']} ({len(t['points'])} checkpoints)", "",
                  "| step | train loss | " + " | ".join(c + (" (%)" if scale.get(c) == 100 else "") for c in cols) + " |",
                  "|" + "---|" * (len(cols) + 2)]
        for p in t["points"]:
            loss = loss_at(t["loss"], p["step"])
            cells = []
            for c in cols:
                cell = p["cells"].get(c)
                digits = 1 if scale.get(c) == 100 else 3
                text = "–" if not cell else f"{cell['value']:.{digits}f}" + (
                    f" ± {cell['stderr']:.{digits}f}" if cell.get("stderr") is not None else "")
                cells.append(f"**{text}** (best)" if cell and t["best"].get(c) == p["step"] else text)
            lines.append(f"| {p['step']} | {'–' if loss is None else f'{loss:.4f}'} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Train loss: the trainer's logged loss at that step (harness_train.json); best: the checkpoint with "
                 "the best value of each metric.")
    return "\n".join(lines) + "\n"
