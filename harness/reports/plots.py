"""The report's plots, drawn with matplotlib and inlined as SVG (no files, no network: ids made unique per plot)."""

from __future__ import annotations

import io
import itertools
import math
import re
from html import escape
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

_counter = itertools.count()
RC: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "harness-report", "font.size": 8.0}
Z95 = 1.959963984540054


def svg(fig: Figure, name: str = "plot") -> str:
    """The figure as an inline <svg> element: no XML prolog, metadata or namespace URLs; ids prefixed, so several
    plots in one page never share an id."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    prefix = f"{re.sub(r'[^A-Za-z0-9_-]', '-', name)}-{next(_counter)}-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'(xlink:href|href)="#([^"]+)"', lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    return text.replace("<svg ", f'<svg class="plot" role="img" aria-label="{escape(name, quote=True)}" ', 1)


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        return Figure(figsize=(width, height), dpi=100, layout="constrained")


def ci_plot(task: str, variants: list[str], metrics: dict[str, list[tuple[float, float | None] | None]],
            unit: dict[str, str]) -> str:
    """Each metric of one task per variant, with its 95% interval (value ± 1.96 stderr); one panel per metric."""
    names = list(metrics)[:8]
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    fig = _figure(2.6 * cols + 1.2, 0.35 * len(variants) * rows + 0.9 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax, metric in zip(axes.flat, names):
        for i, point in enumerate(metrics[metric]):
            if point is None:
                continue
            value, se = point
            ax.errorbar([value], [i], xerr=[[Z95 * se], [Z95 * se]] if se else None, fmt="o", capsize=3,
                        color=f"C{i % 10}", gid=f"ci-{i}")
        ax.set_title(f"{metric}{unit.get(metric, '')}")
        ax.set_yticks(range(len(variants)), variants)
        ax.set_ylim(-0.6, len(variants) - 0.4)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{task}: mean and 95% interval")
    return svg(fig, f"ci-{task}")


def trajectory_plot(traj: dict[str, Any], scale: dict[str, float]) -> str:
    """Each metric against training step (one marker per checkpoint, the best one starred) and the train loss."""
    fig = _figure(7.0, 3.6)
    ax: Axes = fig.subplots()
    for j, col in enumerate(traj["columns"]):
        pts = [(p["step"], p["cells"][col]["value"]) for p in traj["points"] if p["cells"].get(col)]
        if not pts:
            continue
        unit = " (%)" if scale.get(col) == 100 else ""
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", color=f"C{j % 10}", label=col + unit,
                gid=f"traj-line-{j}")
        best = traj["best"].get(col)
        if best is not None:
            v = next(v for s, v in pts if s == best)
            ax.plot([best], [v], marker="*", markersize=14, color=f"C{j % 10}", linestyle="none", gid=f"traj-best-{j}")
            ax.annotate(f"best {col.rsplit('/', 1)[-1]}: step {best}", (best, v), textcoords="offset points",
                        xytext=(4, 6), fontsize=7, color=f"C{j % 10}")
        if col in traj.get("base", {}):
            ax.axhline(traj["base"][col], color=f"C{j % 10}", linestyle=":", linewidth=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("metric (dotted: base)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if traj.get("loss"):
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in traj["loss"]], [v for _, v in traj["loss"]], color="grey", linewidth=1, alpha=0.7,
                 label="train loss", gid="traj-loss")
        ax2.set_ylabel("train loss")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="best")
    ax.set_title(f"{traj['base_name']}: {traj['name']} by checkpoint")
    return svg(fig, f"trajectory-{traj['name']}")


def interval_plot(title: str, xlabel: str, rows: list[tuple[str, float, float, float]], name: str) -> str:
    """One horizontal interval per row (label, value, low, high): ratings, mean judge scores."""
    fig = _figure(6.0, 0.4 * len(rows) + 1.0)
    ax: Axes = fig.subplots()
    for i, (_, v, lo, hi) in enumerate(rows):
        ax.errorbar([v], [i], xerr=[[v - lo], [hi - v]], fmt="o", capsize=3, color=f"C{i % 10}")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    return svg(fig, name)


def forgetting_plot(report: dict[str, Any]) -> str:
    """Target gain against mean change on the suite, one point per adapter, with 95% intervals (as forgetting.png)."""
    fig = _figure(5.5, 4.0)
    ax: Axes = fig.subplots()
    for i, a in enumerate(report["adapters"]):
        x, y = 100 * a["mean_change"], 100 * a["target"]["change"]
        xe = [[x - 100 * a["mean_change_ci95"][0]], [100 * a["mean_change_ci95"][1] - x]]
        ye = [[y - 100 * a["target"]["change_ci95"][0]], [100 * a["target"]["change_ci95"][1] - y]]
        ax.errorbar([x], [y], xerr=xe, yerr=ye, fmt="o", capsize=3, color=f"C{i % 10}")
        ax.annotate(a["label"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"mean change on {', '.join(report['suite'])} (points)")
    ax.set_ylabel(f"{report['target']} gain (points)")
    ax.set_title("Learning vs forgetting (95% intervals)")
    return svg(fig, "forgetting")


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def sweep_plot(sweep: dict[str, Any]) -> str | None:
    """The sweep's metric against each numeric grid axis (as sweep.png), base as a dashed line."""
    points, metric = sweep.get("points") or [], sweep.get("metric")
    if not points or not metric:
        return None
    keys = [k for k in points[0]["params"] if all(_num(p["params"].get(k)) is not None for p in points)]
    if not keys:
        return None
    fig = _figure(4.2 * len(keys), 3.2)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        pts = sorted((_num(p["params"][key]), p["metrics"].get(metric, float("nan"))) for p in points)
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", linestyle="none")
        xs = [x for x, _ in pts if x is not None]
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log")
        base = (sweep.get("base") or {}).get(metric)
        if base is not None:
            ax.axhline(base, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sweep: {sweep.get('task')} · {metric} (dashed: base)")
    return svg(fig, "sweep")
