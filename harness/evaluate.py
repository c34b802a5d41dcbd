"""One evaluation run: tasks -> requests -> runner and store -> model -> scores -> results files.

The base model is loaded once; each adapter is applied to it in turn. Every answer is recorded
in the store as its batch finishes, so `--resume` after a crash recomputes nothing finished.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.metrics.stats import Metric
from harness.models.loading import ModelSpec, Variant, iter_variants, model_key, read_adapter_config, short_name
from harness.registry import make_tasks
from harness.requests import Generate, LogLikelihood, Request
from harness.results import atomic_write_json, atomic_write_jsonl, header
from harness.runner import run_requests
from harness.store import Store
from harness.task import Doc, Task, TaskConfig, rows_hash


@dataclass
class RunSpec:
    model: ModelSpec
    tasks: list[str]
    task_cfg: TaskConfig = field(default_factory=TaskConfig)
    output_dir: Path = Path("results")
    run_name: str | None = None
    resume: bool = False
    quiet: bool = False


def log(msg: str, quiet: bool) -> None:
    """Log lines go to stderr always; --quiet only turns off progress bars."""
    print(msg, file=sys.stderr)


def load_tasks(names: list[str], cfg: TaskConfig) -> list[tuple[Task, list[Doc], str]]:
    """Every task with its (limited) docs and the hash of all its rows; data errors surface before any model loads."""
    out = []
    for name in names:
        for task in make_tasks(name, cfg):
            docs = task.docs()
            if not docs:
                raise HarnessError(f"task {task.name}: the dataset has no rows")
            data_hash = rows_hash(docs)
            if cfg.limit is not None:
                docs = docs[: cfg.limit]
            out.append((task, docs, data_hash))
    return out


def request_prompt(reqs: list[Request]) -> Any:
    """What the model was shown for one doc, for samples files of tasks that do not record it themselves."""
    shown: list[Any] = []
    for r in reqs:
        if isinstance(r, Generate):
            x: Any = r.prompt if isinstance(r.prompt, str) else [list(m) for m in r.prompt]
        elif isinstance(r, LogLikelihood):
            x = r.context
        else:
            x = list(r.inputs)
        if x not in shown:
            shown.append(x)
    return shown[0] if len(shown) == 1 else shown


def evaluate_task(variant: Variant, task: Task, docs: list[Doc], data_hash: str, store: Store | None,
                  resume: bool, quiet: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one task on one model variant: (the task's results entry, per-sample records)."""
    t0 = time.time()
    per_doc = [task.requests(d) for d in docs]
    flat = [r for reqs in per_doc for r in reqs]
    answers = run_requests(variant.model, model_key(variant.identity), flat, store, resume, quiet,
                           description=f"{variant.label} · {task.name}")
    samples = []
    for d, reqs in zip(docs, per_doc):
        rec = task.score(d, [answers[r.key()] for r in reqs])
        if "prompt" not in rec and reqs:
            rec["prompt"] = request_prompt(reqs)
        samples.append({"doc_id": d["id"], **rec})
    agg = task.aggregate(samples)
    metrics = {k: v.to_json() for k, v in agg.items() if isinstance(v, Metric)}
    details = {k: v for k, v in agg.items() if not isinstance(v, Metric)}
    entry: dict[str, Any] = {
        "version": task.version,
        "output_type": task.output_type,
        "config_hash": task.cfg.hash(),
        "data": {"source": task.source_description or task.data_source, "hash": data_hash},
        "n": len(docs),
        "metrics": metrics,
        "higher_is_better": task.higher_is_better,
        "seed": task.cfg.seed,
        "num_fewshot": task.cfg.num_fewshot,
        "wall_time_s": round(time.time() - t0, 3),
    }
    if details:
        entry["details"] = details
    return entry, samples


def run(spec: RunSpec, argv: list[str] | None = None) -> list[Path]:
    """Evaluate every variant on every task; returns the results.json paths written."""
    for a in spec.model.adapters:
        read_adapter_config(a)  # flags first: a wrong --adapter should not wait for data loading
    loaded = load_tasks(spec.tasks, spec.task_cfg)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base_name = spec.run_name or f"{short_name(spec.model.model)}-{stamp}"
    store = Store(spec.output_dir / ".store.sqlite")
    written: list[Path] = []
    n_variants = len(spec.model.adapters) + (1 if spec.model.with_base or not spec.model.adapters else 0)
    try:
        for variant in iter_variants(spec.model):
            for task, _, _ in loaded:
                task.cfg.model_kind = variant.identity.get("kind", "causal")
            run_dir = spec.output_dir / (base_name if n_variants == 1 else f"{base_name}__{variant.label}")
            log(f"evaluating {variant.label} -> {run_dir}", spec.quiet)
            tasks_out: dict[str, Any] = {}
            all_samples: dict[str, list[dict[str, Any]]] = {}
            for task, docs, data_hash in loaded:
                entry, samples = evaluate_task(variant, task, docs, data_hash, store, spec.resume, spec.quiet)
                tasks_out[task.name] = entry
                all_samples[task.name] = samples
            for name, samples in all_samples.items():
                atomic_write_jsonl(run_dir / "samples" / f"{name}.jsonl", samples)
            ident = {k: v for k, v in variant.identity.items()}
            ident["device"] = spec.model.device
            results = {
                **header(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "label": variant.label,
                "model": ident,
                "run": {"command": argv or sys.argv, "batch_size": spec.model.batch_size, "limit": spec.task_cfg.limit,
                        "num_fewshot": spec.task_cfg.num_fewshot, "seed": spec.task_cfg.seed,
                        "samples": spec.task_cfg.samples, "temperature": spec.task_cfg.temperature},
                "tasks": tasks_out,
            }
            path = run_dir / "results.json"
            atomic_write_json(path, results)
            written.append(path)
            log(f"wrote {path}", spec.quiet)
    finally:
        store.close()
    return written
