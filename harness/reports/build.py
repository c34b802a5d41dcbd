"""Everything the HTML report shows, gathered from results directories alone (no model, no network).

The leaderboard (with paired tests), each task's settings and intervals, every sample of every variant
(normalised to prompt / output / extracted / target / metrics, prompts kept once per document), checkpoint
trajectories, judgments and tournaments, forgetting reports and sweeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results import find_results, read_results

CORE = ("doc_id", "prompt", "output", "extracted", "target", "metrics")
MORE_LIMIT = 4000  # characters of a sample's other fields kept for the browser


@dataclass
class Report:
    roots: list[Path]
    table: dict[str, Any] | None  # the leaderboard (harness.leaderboard.table), None when no results.json exists
    tasks: list[dict[str, Any]] = field(default_factory=list)  # name, columns, settings per row, default metric
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> the samples browser's data
    judges: dict[str, Any] = field(default_factory=dict)
    forgetting: list[dict[str, Any]] = field(default_factory=list)
    sweeps: list[dict[str, Any]] = field(default_factory=list)


def _text(x: Any) -> str | None:
    """A prompt, output or answer as display text: chat turns as `role: content`, several outputs numbered."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, list) and x and all(isinstance(m, (list, tuple)) and len(m) == 2 for m in x):
        return "\n".join(f"{m[0]}: {m[1]}" for m in x)
    if isinstance(x, list):
        if len(x) == 1:
            return _text(x[0])
        return "\n".join(f"[{i + 1}] {_text(v)}" for i, v in enumerate(x))
    if isinstance(x, dict):
        return " · ".join(f"{k}: {v}" for k, v in x.items())
    return str(x)


def _choice(r: dict[str, Any], key: str) -> str | None:
    i, conts = r.get(key), r.get("continuations")
    if isinstance(i, int) and not isinstance(i, bool) and isinstance(conts, list) and 0 <= i < len(conts):
        return f"[{i}] {conts[i]}"
    return None


def normalise(r: dict[str, Any]) -> dict[str, Any]:
    """One sample record as the browser shows it; fields a task records beyond the common ones go to `more`."""
    output = _text(r.get("output")) if "output" in r else _choice(r, "pred")
    extracted = _text(r.get("extracted")) if "extracted" in r else (
        _text({k: r[k] for k in ("pred", "pred_norm") if k in r}) or None)
    target = _text(r.get("target")) if "target" in r else (_choice(r, "gold") or _text(r.get("label", r.get("gold"))))
    prompt = _text(r.get("prompt", r.get("inputs")))
    metrics = {k: v for k, v in (r.get("metrics") or {}).items() if isinstance(v, (int, float))}
    rest = {k: v for k, v in r.items() if k not in CORE}
    more = json.dumps(rest, ensure_ascii=False, default=str) if rest else ""
    if len(more) > MORE_LIMIT:
        more = more[:MORE_LIMIT] + " …"
    return {"prompt": prompt, "output": output, "extracted": extracted, "target": target, "metrics": metrics,
            "more": more}


def _default_metric(task: str, per_sample: list[str], columns: list[str]) -> str | None:
    from harness.forgetting import PRIMARY

    if PRIMARY.get(task) in per_sample:
        return PRIMARY[task]
    return next((m for m in columns if m in per_sample), per_sample[0] if per_sample else None)


def task_samples(task: str, runs: list[tuple[int, Path]], columns: list[str]) -> dict[str, Any] | None:
    """The browser's data of one task: documents once (id, prompt, target) and per variant its columns."""
    from harness.reports.samples import doc_key, read_samples

    docs: list[list[Any]] = []
    index: dict[str, int] = {}
    per_variant: list[tuple[int, dict[int, dict[str, Any]]]] = []
    metric_names: list[str] = []
    for row_index, run_dir in runs:
        rows = read_samples(run_dir, task)
        if rows is None:
            continue
        slots: dict[int, dict[str, Any]] = {}
        for i, rec in enumerate(rows):
            s = normalise(rec)
            key = doc_key(rec, i)
            while key in index and index[key] in slots:  # a doc id repeated within one file stays two samples
                key += "#"
            if key not in index:
                index[key] = len(docs)
                docs.append([key, s["prompt"], s["target"]])
            slots[index[key]] = s
            metric_names += [m for m in s["metrics"] if m not in metric_names]
        per_variant.append((row_index, slots))
    if not per_variant:
        return None
    return {"task": task, "metrics": metric_names, "default": _default_metric(task, metric_names, columns),
            "docs": docs, "variants": [_columns(i, slots, docs, metric_names) for i, slots in per_variant]}


def _columns(row_index: int, slots: dict[int, dict[str, Any]], docs: list[list[Any]], metrics: list[str]
             ) -> dict[str, Any]:
    """One variant's samples as columns aligned with `docs` (None where it has no sample of the document); its
    prompt or target only where it differs from the document's."""
    n = len(docs)
    got = [slots.get(i) for i in range(n)]
    def col(name: str) -> list[Any]:
        return [s[name] if s else None for s in got]

    v: dict[str, Any] = {"v": row_index, "n": len(slots), "out": col("output"), "ext": col("extracted"), "more": col("more"),
                         "met": {m: [s["metrics"].get(m) if s else None for s in got] for m in metrics},
                         "prompt": {str(i): s["prompt"] for i, s in enumerate(got) if s and s["prompt"] != docs[i][1]},
                         "target": {str(i): s["target"] for i, s in enumerate(got) if s and s["target"] != docs[i][2]}}
    return v


def _results(run_dir: Path, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    if run_dir not in cache:
        cache[run_dir] = read_results(run_dir / "results.json")
    return cache[run_dir]


def task_settings(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task: its metric columns, and per leaderboard row the run's settings (few-shot, decoding, seed, backend,
    quantisation, data source and hash)."""
    names: list[str] = []
    for c in table["columns"]:
        t = c.rsplit("/", 1)[0]
        if t not in names:
            names.append(t)
    cache: dict[Path, dict[str, Any]] = {}
    out = []
    for t in names:
        cols = [c for c in table["columns"] if c.rsplit("/", 1)[0] == t]
        rows = []
        for i, r in enumerate(table["rows"]):
            run = next((r["runs"][c] for c in cols if c in r["runs"]), None)
            if run is None:
                continue
            res = _results(Path(run), cache)
            rows.append({"row": i, "run": run, "entry": res["tasks"].get(t, {}), "model": res.get("model", {}),
                         "backend": res.get("backend", {}), "settings": res.get("run", {})})
        out.append({"name": t, "columns": cols, "rows": rows})
    return out


def _json_files(roots: list[Path], name: str) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for root in roots:
        for f in sorted(root.rglob(name)) if root.is_dir() else []:
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(data, dict):
                out.append((f, data))
    return out


def build(roots: list[Path]) -> Report:
    """Read every results directory; a missing directory or one with nothing to show is an error."""
    from harness.leaderboard import table
    from harness.reports import judging

    for r in roots:
        if not r.exists():
            raise HarnessError(f"{r}: no such file or directory")
    has_results = any(find_results(r) for r in roots)
    rep = Report(roots=roots, table=table(roots, with_significance=True) if has_results else None)
    rep.forgetting = [d for _, d in _json_files(roots, "forgetting.json") if d.get("kind") == "forgetting-report"]
    rep.sweeps = [{**d, "path": str(f)} for f, d in _json_files(roots, "sweep.json") if "points" in d and "grid" in d]
    judgment_files, match_files = judging.find(roots)
    if judgment_files or match_files:
        rep.judges = judging.summarise(judgment_files, match_files)
    if rep.table is None and not (rep.forgetting or rep.sweeps or rep.judges):
        raise HarnessError(f"{', '.join(map(str, roots))}: no results.json, judgments, forgetting report or sweep found")
    if rep.table is not None:
        rep.tasks = task_settings(rep.table)
        for t in rep.tasks:
            runs = [(s["row"], Path(s["run"])) for s in t["rows"]]
            data = task_samples(t["name"], runs, [c.rsplit("/", 1)[1] for c in t["columns"]])
            if data is not None:
                rep.samples[t["name"]] = data
                t["default_metric"] = data["default"]
    return rep
