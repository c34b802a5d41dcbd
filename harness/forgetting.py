"""The forgetting report: what fine-tuning cost on a fixed suite, next to what it gained on the target task.

After "LoRA Learns Less and Forgets Less" (Biderman et al., 2024): for each adapter, each suite task's score,
its change against the base, the mean change over the suite, and, with a target task, the target gain and a
plot of gain against mean forgetting (one point per adapter).

Everything is computed from run directories (results.json + samples/<task>.jsonl) alone, so the report can
be rebuilt from the samples files (`harness forgetting --from-runs BASE_RUN --from-runs ADAPTER_RUN ...`).
Base and adapter are compared on the same questions (paired by doc id): the change's 95% interval is a paired
bootstrap percentile interval, and its p-value is McNemar's exact test for 0/1 scores (else a paired bootstrap),
not lm-eval's unpaired comparison of two independent means.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.results import atomic_write_json, atomic_write_text, header, read_results
from harness.task import Task, TaskConfig

SUITE = ("hellaswag", "winogrande", "arc_challenge", "arc_easy")
PRIMARY = {"hellaswag": "acc_norm", "winogrande": "acc", "arc_challenge": "acc_norm", "arc_easy": "acc_norm"}
BOOTSTRAP_ITERS = 2000
SEED = 1234
REPORT = "forgetting.json"


def suite_tasks(cfg: TaskConfig) -> list[Task]:
    """The `forgetting` task group: HellaSwag, WinoGrande, ARC-Challenge and ARC-Easy."""
    from harness.registry import make_tasks

    return [t for name in SUITE for t in make_tasks(name, cfg)]


# --- reading runs ------------------------------------------------------------------------------------------------


def load_run(run_dir: Path) -> dict[str, Any]:
    """results.json and the per-sample metrics of every task in one run directory."""
    res = read_results(run_dir / "results.json")
    samples: dict[str, dict[str, dict[str, float]]] = {}
    for task in res.get("tasks", {}):
        f = run_dir / "samples" / f"{task}.jsonl"
        if not f.exists():
            raise HarnessError(f"{f}: samples file missing (the report is computed from samples)")
        rows: dict[str, dict[str, float]] = {}
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    s = json.loads(line)
                except json.JSONDecodeError as e:
                    raise HarnessError(f"{f}:{i}: not valid JSON ({e.msg})") from None
                rows[str(s["doc_id"])] = s.get("metrics", {})
        samples[task] = rows
    return {"dir": str(run_dir), "label": res.get("label", run_dir.name), "model": res.get("model", {}),
            "tasks": res.get("tasks", {}), "samples": samples}


def primary_metric(task: str, run: dict[str, Any], override: str | None = None) -> str:
    metrics = list(run["tasks"][task]["metrics"])
    name = override or PRIMARY.get(task) or (metrics[0] if metrics else "")
    if name not in metrics:
        raise HarnessError(f"task {task} in {run['dir']}: no metric {name!r} (has {', '.join(metrics)})")
    return name


# --- statistics --------------------------------------------------------------------------------------------------


def _boot_means(values: np.ndarray, idx_chunks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([values[idx].mean(axis=1) for idx in idx_chunks])


def _indices(n: int, rng: np.random.Generator, iters: int) -> list[np.ndarray]:
    step = max(1, min(iters, 2_000_000 // max(n, 1)))
    out, left = [], iters
    while left > 0:
        k = min(step, left)
        out.append(rng.integers(0, n, size=(k, n)))
        left -= k
    return out


def _interval(x: np.ndarray) -> list[float]:
    lo, hi = np.percentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]


def paired_comparison(base: list[float], adapter: list[float], seed: int = SEED,
                      iters: int = BOOTSTRAP_ITERS) -> tuple[dict[str, Any], np.ndarray]:
    """Scores, change, 95% paired-bootstrap intervals and a paired test; also the bootstrap changes (for the suite mean)."""
    b, a = np.asarray(base, dtype=float), np.asarray(adapter, dtype=float)
    n = len(b)
    rng = np.random.default_rng(seed)
    chunks = _indices(n, rng, iters)
    bb, ab = _boot_means(b, chunks), _boot_means(a, chunks)
    deltas = ab - bb
    out: dict[str, Any] = {"n": n, "base": float(b.mean()), "adapter": float(a.mean()), "change": float(a.mean() - b.mean()),
                           "base_ci95": _interval(bb), "adapter_ci95": _interval(ab), "change_ci95": _interval(deltas)}
    if set(np.unique(np.concatenate([a, b]))) <= {0.0, 1.0}:
        from scipy.stats import binomtest

        lost = int(((b == 1) & (a == 0)).sum())
        gained = int(((b == 0) & (a == 1)).sum())
        p = 1.0 if lost + gained == 0 else float(binomtest(gained, lost + gained, 0.5).pvalue)
        out.update(test="mcnemar-exact", p_value=p, lost=lost, gained=gained)
    else:
        centred = deltas - deltas.mean()
        p = float((np.abs(centred) >= abs(out["change"])).mean())
        out.update(test="paired-bootstrap", p_value=p)
    return out, deltas


# --- the report --------------------------------------------------------------------------------------------------


def _paired_values(task: str, metric: str, base: dict[str, Any], run: dict[str, Any]) -> tuple[list[float], list[float]]:
    if task not in run["samples"]:
        raise HarnessError(f"{run['dir']}: no results for task {task}")
    bs, rs = base["samples"][task], run["samples"][task]
    ids = [d for d in bs if d in rs]
    if not ids:
        raise HarnessError(f"task {task}: {base['dir']} and {run['dir']} share no questions (different data or --limit)")
    return [float(bs[d][metric]) for d in ids], [float(rs[d][metric]) for d in ids]


def build_report(base_dir: Path, adapter_dirs: list[Path], tasks: list[str] | None = None, target: str | None = None,
                 target_metric: str | None = None, seed: int = SEED) -> dict[str, Any]:
    """The report as data, computed from run directories only."""
    base = load_run(base_dir)
    runs = [load_run(d) for d in adapter_dirs]
    if not runs:
        raise HarnessError("the forgetting report needs at least one adapter run")
    suite = [t for t in (tasks or [t for t in base["tasks"] if t != target]) if t != target]
    for t in suite + ([target] if target else []):
        if t not in base["tasks"]:
            raise HarnessError(f"{base_dir}: the base run has no results for task {t}")
    metrics = {t: primary_metric(t, base) for t in suite}
    adapters = []
    for run in runs:
        entry: dict[str, Any] = {"label": run["label"], "run": run["dir"], "adapter": run["model"].get("adapter"),
                                 "adapter_hash": run["model"].get("adapter_hash"), "tasks": {}}
        boot = []
        for t in suite:
            cmp, deltas = paired_comparison(*_paired_values(t, metrics[t], base, run), seed=seed)
            entry["tasks"][t] = {"metric": metrics[t], **cmp}
            boot.append(deltas)
        if suite:
            mean_boot = np.mean(np.stack(boot), axis=0)
            entry["mean_change"] = float(np.mean([entry["tasks"][t]["change"] for t in suite]))
            entry["mean_change_ci95"] = _interval(mean_boot)
        if target:
            m = primary_metric(target, base, target_metric)
            cmp, _ = paired_comparison(*_paired_values(target, m, base, run), seed=seed)
            entry["target"] = {"task": target, "metric": m, **cmp}
        adapters.append(entry)
    return {**header(), "kind": "forgetting-report", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "base": {"run": base["dir"], "label": base["label"], "model": base["model"].get("base"),
                     "quantization": base["model"].get("quantization")},
            "suite": suite, "metrics": metrics, "target": target, "bootstrap": {"iters": BOOTSTRAP_ITERS, "seed": seed},
            "adapters": adapters}


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _ci(ci: list[float]) -> str:
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def render_markdown(report: dict[str, Any], heading: str = "#") -> str:
    suite, target = report["suite"], report["target"]
    lines = [f"{heading} Forgetting report: {Path(str(report['base']['model'])).name}", "",
             f"Base run `{report['base']['run']}`; scores in %, change = adapter − base on the same questions with its "
             f"95% paired-bootstrap interval ({report['bootstrap']['iters']} resamples) and p-value "
             "(McNemar exact for 0/1 scores).", ""]
    cols = [f"{t} ({report['metrics'][t]})" for t in suite] + (["mean change"] if suite else [])
    cols += [f"target {target}"] if target else []
    lines += ["| adapter | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    if report["adapters"]:
        first = report["adapters"][0]
        base_cells = [_pct(first["tasks"][t]["base"]) for t in suite] + (["–"] if suite else [])
        base_cells += [_pct(first["target"]["base"])] if target else []
        lines.append("| base | " + " | ".join(base_cells) + " |")
    for a in report["adapters"]:
        cells = []
        for t in suite:
            r = a["tasks"][t]
            cells.append(f"{_pct(r['adapter'])} ({100 * r['change']:+.1f} {_ci(r['change_ci95'])}, p={_p(r['p_value'])})")
        if suite:
            cells.append(f"{100 * a['mean_change']:+.1f} {_ci(a['mean_change_ci95'])}")
        if target:
            r = a["target"]
            cells.append(f"{_pct(r['adapter'])} (gain {100 * r['change']:+.1f} {_ci(r['change_ci95'])}, p={_p(r['p_value'])})")
        lines.append(f"| {a['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Target gain against mean change on the suite, one point per adapter, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for a in report["adapters"]:
        x, y = 100 * a["mean_change"], 100 * a["target"]["change"]
        xe = [[x - 100 * a["mean_change_ci95"][0]], [100 * a["mean_change_ci95"][1] - x]]
        ye = [[y - 100 * a["target"]["change_ci95"][0]], [100 * a["target"]["change_ci95"][1] - y]]
        ax.errorbar([x], [y], xerr=xe, yerr=ye, fmt="o", capsize=3)
        ax.annotate(a["label"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"mean change on {', '.join(report['suite'])} (points)")
    ax.set_ylabel(f"{report['target']} gain (points)")
    ax.set_title("Learning vs forgetting (95% intervals)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """forgetting.json, forgetting.md and (with a target) forgetting.png, each written atomically."""
    paths = [out_dir / REPORT, out_dir / "forgetting.md"]
    if report["target"] and report["suite"]:
        paths.append(out_dir / "forgetting.png")
        plot(report, paths[-1])
    atomic_write_text(paths[1], render_markdown(report))
    atomic_write_json(paths[0], report)
    return paths


def leaderboard_section(root: Path) -> str:
    """Every forgetting report under root, newest first, as Markdown for `harness leaderboard` ('' when none)."""
    reports = []
    for f in sorted(root.rglob(REPORT)) if root.is_dir() else []:
        try:
            r = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if r.get("kind") == "forgetting-report":
            reports.append(r)
    if not reports:
        return ""
    reports.sort(key=lambda r: r.get("created", ""), reverse=True)
    return "## Forgetting\n\n" + "\n".join(render_markdown(r, heading="###") for r in reports)
