"""One evaluation run: tasks -> requests -> runner and store -> model -> scores -> results files.

The base model is loaded once; each adapter is applied to it in turn. Every answer is recorded
in the store as its batch finishes, so `--resume` after a crash recomputes nothing finished.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, Session, VariantInfo
from harness.data import rows_hash
from harness.errors import HarnessError
from harness.execute.ray import RayOptions
from harness.metrics.stats import Metric
from harness.models.loading import (
    ModelSpec,
    Variant,
    model_key,
    read_adapter_config,
    short_name,
    variant_labels,
)
from harness.registry import make_tasks
from harness.requests import Generate, LogLikelihood, Request
from harness.results import atomic_write_json, atomic_write_jsonl, header
from harness.runner import Plan, plan_mixed, plan_requests, run_mixed, run_requests
from harness.store import Store
from harness.task import Doc, ModelInfo, Task, TaskConfig, check_options


@dataclass
class RunSpec:
    model: ModelSpec
    tasks: list[str]
    task_cfg: TaskConfig = field(default_factory=TaskConfig)
    output_dir: Path = Path("results")
    run_name: str | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    ray: RayOptions | None = None  # answer on replicas of a Ray cluster instead of in this process


def log(msg: str, quiet: bool) -> None:
    """Log lines go to stderr always; --quiet only turns off progress bars."""
    print(msg, file=sys.stderr)


def load_tasks(names: list[str], cfg: TaskConfig) -> list[tuple[Task, list[Doc], str]]:
    """Every task with its (limited) docs and the hash of all its rows; option and data errors surface before any
    model loads."""
    tasks = [t for name in names for t in make_tasks(name, cfg)]
    check_options(tasks, cfg.options)
    for task in tasks:
        if cfg.samples > 1 and not task.sampling:
            raise HarnessError(f"--samples {cfg.samples}: task {task.name} scores one output per prompt "
                               "(pass@k and maj@n are for tasks such as gsm8k)")
        task.check()
    out = []
    for task in tasks:
        docs = task.docs()
        if not docs:
            raise HarnessError(f"task {task.name}: {task.source_description or 'the dataset'} has no rows")
        data_hash = rows_hash(docs)
        if cfg.limit is not None:
            docs = docs[: cfg.limit]
        out.append((task, docs, data_hash))
    return out


GENERATION_FIELDS = ("max_new_tokens", "temperature", "top_p", "n", "seed", "num_beams", "length_penalty",
                     "no_repeat_ngram_size", "stop")


def generation_used(reqs: list[Request]) -> dict[str, Any] | None:
    """The generation settings the task's requests actually carry (each field: one value, or every distinct one)."""
    gens = [r for r in reqs if isinstance(r, Generate)]
    if not gens:
        return None
    out: dict[str, Any] = {}
    for f in GENERATION_FIELDS:
        values = sorted({json.dumps(getattr(g, f)) for g in gens})
        decoded = [json.loads(v) for v in values]
        out[f] = decoded[0] if len(decoded) == 1 else decoded
    return out


def check_honoured(cfg: TaskConfig, loaded: list[tuple[Task, list[Doc], str]], model: ModelInfo) -> None:
    """Flags no task of the run can use are errors, not silence: few-shot, and generation flags without generation."""
    for task, _, _ in loaded:
        if cfg.fewshot > 0 and not task.supports_fewshot(model):
            raise HarnessError(f"--num-fewshot {cfg.fewshot}: task {task.name} has no few-shot prompt for a {model.kind} "
                               "model (use --num-fewshot 0)")
    defaults = TaskConfig()
    given = [flag for flag, field in (("--num-beams", "num_beams"), ("--length-penalty", "length_penalty"),
                                      ("--no-repeat-ngram-size", "no_repeat_ngram_size"), ("--max-new-tokens", "max_new_tokens"),
                                      ("--temperature", "temperature"), ("--top-p", "top_p"))
             if getattr(cfg, field) != getattr(defaults, field)]
    if given and not any(isinstance(r, Generate) for t, docs, _ in loaded for d in docs[:1] for r in t.requests(d, model)):
        names = ", ".join(t.name for t, _, _ in loaded)
        raise HarnessError(f"{', '.join(given)}: no task of this run ({names}) generates text, so nothing would use it")


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


def build_requests(task: Task, docs: list[Doc], model: ModelInfo) -> list[list[Request]]:
    return [task.requests(d, model) for d in docs]


def score_task(task: Task, docs: list[Doc], per_doc: list[list[Request]], answers: dict[str, Any], data_hash: str,
               model: ModelInfo, wall_time: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the task's results entry, per-sample records) from its answers."""
    samples = []
    for d, reqs in zip(docs, per_doc):
        rec = task.score(d, [answers[r.key()] for r in reqs], model)
        if "prompt" not in rec and reqs:
            rec["prompt"] = request_prompt(reqs)
        samples.append({"doc_id": d["id"], **rec})
    agg = task.aggregate(samples)
    metrics = {k: v.to_json() for k, v in agg.items() if isinstance(v, Metric)}
    details = {k: v for k, v in agg.items() if not isinstance(v, Metric)}
    flat = [r for reqs in per_doc for r in reqs]
    kinds = sorted({r.kind for r in flat})
    entry: dict[str, Any] = {
        "version": task.version,
        "output_type": "|".join(kinds) or task.output_type,
        "config_hash": task.cfg.hash(),
        "data": {"source": task.source_description or task.data_source, "hash": data_hash},
        "n": len(docs),
        "metrics": metrics,
        "higher_is_better": task.higher_is_better,
        "seed": task.cfg.seed,
        "num_fewshot": task.fewshot_used(),
        "generation": generation_used(flat),
        "wall_time_s": round(wall_time, 3),
    }
    if details:
        entry["details"] = details
    return entry, samples


def evaluate_task(variant: Variant, task: Task, docs: list[Doc], data_hash: str, store: Store | None,
                  resume: bool, quiet: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one task on one loaded model variant (the trainer's mid-run evaluation)."""
    t0 = time.time()
    model = ModelInfo(variant.identity.get("kind", "causal"))
    per_doc = build_requests(task, docs, model)
    flat = [r for reqs in per_doc for r in reqs]
    answers = run_requests(variant.model, model_key(variant.identity), flat, store, resume, quiet,
                           description=f"{variant.label} · {task.name}")
    return score_task(task, docs, per_doc, answers, data_hash, model, time.time() - t0)


def answer_mixed(session: Session, task: Task, docs: list[Doc], data_hash: str, store: Store, spec: RunSpec
                 ) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """{variant label: (entry, samples)} of one task, every variant's requests in batches that mix them (for a
    backend whose engine serves all adapters at once)."""
    t0 = time.time()
    model = ModelInfo(session.kind)
    per_doc = build_requests(task, docs, model)
    flat = [r for reqs in per_doc for r in reqs]
    keyed = {v.label: (model_key(v.identity), flat) for v in session.variants}
    got = run_mixed(session, keyed, store, spec.resume, spec.quiet, description=f"{len(keyed)} variant(s) · {task.name}")
    wall = time.time() - t0
    return {label: score_task(task, docs, per_doc, answers, data_hash, model, wall) for label, answers in got.items()}


class RunDirs(dict[str, Path]):
    """{variant label: its run directory}, reserved for this process by a lock file until release()."""

    def __init__(self, dirs: dict[str, Path], lock: RunLock, made: list[Path]) -> None:
        super().__init__(dirs)
        self.lock = lock
        self._made = made  # output directories this reservation created (deepest first): removed again if left empty

    def release(self) -> None:
        self.lock.release()
        _remove_empty(self._made)


class RunLock:
    """OUT/.NAME.lock, held with flock for the life of the run and holding its pid. The kernel drops the flock when
    the process ends however it ends (kill -9 included), so a lock file left behind by a dead run is simply taken
    over; two live runs can never both hold it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def take(cls, path: Path) -> RunLock | None:
        """The lock, or None when another live process holds it."""
        import fcntl

        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder released (unlinked) it between our open and flock: take the new file
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return cls(path, fd)

    @staticmethod
    def holder(path: Path) -> str:
        try:
            pid = path.read_text().strip()
        except OSError:
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlinked while still held, so no waiter can lock a stale file
        finally:
            os.close(self._fd)
            self._fd = -1


def _make_dirs(out: Path) -> list[Path]:
    """mkdir -p OUT; the directories it created, deepest first."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    return made


def _remove_empty(made: list[Path]) -> None:
    """Remove what _make_dirs created, deepest first, as far as it is still empty: an error leaves nothing behind."""
    for d in made:
        try:
            d.rmdir()
        except OSError:
            break


def plan_run_dirs(spec: RunSpec) -> RunDirs:
    """{variant label: its run directory}, reserved for this run (OUT/.NAME.lock) until its release(). A default name
    is unique (timestamp + random suffix, another on collision); an existing directory is an error unless --resume or
    --overwrite, and a --run-name another live run holds is an error whatever the flags, so no results are ever
    silently replaced."""
    out = spec.output_dir
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--output-dir {out}: exists and is not a directory")
    labels = variant_labels(spec.model)
    try:
        made = _make_dirs(out)
    except OSError as e:
        raise HarnessError(f"--output-dir {out}: cannot create it ({e.strerror})") from None
    try:
        for _ in range(100):
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            base = spec.run_name or f"{short_name(spec.model.model)}-{stamp}-{secrets.token_hex(2)}"
            dirs = {lab: out / (base if len(labels) == 1 else f"{base}__{lab}") for lab in labels}
            lock_path = out / f".{base}.lock"
            lock = RunLock.take(lock_path)
            if lock is None:
                if spec.run_name is not None:
                    raise HarnessError(f"--run-name {spec.run_name}: {out / base} is in use by another harness run"
                                       f"{RunLock.holder(lock_path)}; wait for it to finish or pass another --run-name")
                continue
            taken = [d for d in dirs.values() if d.exists()]
            if not taken or (spec.run_name is not None and (spec.resume or spec.overwrite)):
                return RunDirs(dirs, lock, made)
            lock.release()
            if spec.run_name is not None:
                raise HarnessError(f"--run-name {spec.run_name}: {taken[0]} already exists; pass --overwrite to replace "
                                   "it, --resume to continue it, or another --run-name")
        raise RuntimeError("could not find a free run directory name")
    except BaseException:
        _remove_empty(made)
        raise


def write_run_dir(run_dir: Path, results: dict[str, Any], samples: dict[str, list[dict[str, Any]]]) -> Path:
    """Write results.json and samples/ into a fresh directory, then move it into place in one rename, so a run
    directory is always whole; an existing one (--overwrite, --resume) is replaced only after the new one is ready."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.", suffix=".tmp"))
    try:
        for name, rows in samples.items():
            atomic_write_jsonl(tmp / "samples" / f"{name.replace('/', '_')}.jsonl", rows)
        atomic_write_json(tmp / "results.json", results)
        old = None
        if run_dir.exists():
            old = run_dir.with_name(f".{run_dir.name}.{secrets.token_hex(4)}.old")
            run_dir.rename(old)
        tmp.rename(run_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir / "results.json"


def open_session(spec: ModelSpec) -> Session:
    from harness.backends import get_backend

    return get_backend(spec.backend)().open(spec)


def run(spec: RunSpec, argv: list[str] | None = None) -> list[Path]:
    """Evaluate every variant on every task; returns the results.json paths written."""
    from harness.backends import get_backend

    backend = get_backend(spec.model.backend)  # a missing extra is an error before any data or model loads
    if backend.local_adapters:  # a served backend's --adapter names a module on the server, not a directory
        for a in spec.model.adapters:
            read_adapter_config(a)  # flags first: a wrong --adapter should not wait for data loading
    run_dirs = plan_run_dirs(spec)  # reserved until the run ends, however it ends
    try:
        loaded = load_tasks(spec.tasks, spec.task_cfg)
        if spec.ray is not None:
            return run_on_ray(spec, run_dirs, loaded, argv)
        return run_here(spec, backend, run_dirs, loaded, argv)
    finally:
        run_dirs.release()


def run_here(spec: RunSpec, backend: type[Backend], run_dirs: dict[str, Path], loaded: list[tuple[Task, list[Doc], str]],
             argv: list[str] | None) -> list[Path]:
    """The run in this process: load the model once, answer every task for every variant, write each run dir."""
    session = backend().open(spec.model)
    store: Store | None = None
    written: list[Path] = []
    store_path = spec.output_dir / ".store.sqlite"
    remember = getattr(session, "remember", None)  # a served endpoint keeps what it said about itself in the store
    try:
        check_honoured(spec.task_cfg, loaded, ModelInfo(session.kind))
        if spec.resume and store_path.exists():
            store = Store.open(store_path, True)
            if remember is not None:
                remember(store, True)
        session.variants  # noqa: B018  # a served model's names are looked up here, before any store is made
        check = getattr(session, "check", None)  # an engine that cannot answer a task's request kind says so now
        if check is not None:
            for task, docs, _ in loaded:
                check(task.name, task.requests(docs[0], ModelInfo(session.kind)))
        if store is None:  # opened once the model has loaded: a failed load leaves no empty store behind
            store = Store.open(store_path, spec.resume)
            if remember is not None:
                remember(store, spec.resume)
        engine = {**session.describe(), "options": spec.model.backend_options}

        def write(v: VariantInfo, tasks_out: dict[str, Any], samples: dict[str, list[dict[str, Any]]]) -> None:
            path = write_run_dir(run_dirs[v.label], results_record(spec, v, engine, tasks_out, argv), samples)
            written.append(path)
            log(f"wrote {path}", spec.quiet)

        if session.mixes_variants:
            outs: dict[str, dict[str, Any]] = {v.label: {} for v in session.variants}
            rows: dict[str, dict[str, list[dict[str, Any]]]] = {v.label: {} for v in session.variants}
            for task, docs, data_hash in loaded:
                for label, (entry, samples) in answer_mixed(session, task, docs, data_hash, store, spec).items():
                    outs[label][task.name], rows[label][task.name] = entry, samples
            for v in session.variants:
                write(v, outs[v.label], rows[v.label])
        else:  # one variant at a time, in order, each written before the next adapter is applied
            for v in session.variants:
                variant = Variant(v.label, session.model_for(v.label), v.identity, v.adapter_path)
                log(f"evaluating {v.label} -> {run_dirs[v.label]}", spec.quiet)
                out_v: dict[str, Any] = {}
                rows_v: dict[str, list[dict[str, Any]]] = {}
                for task, docs, data_hash in loaded:
                    out_v[task.name], rows_v[task.name] = evaluate_task(variant, task, docs, data_hash, store,
                                                                        spec.resume, spec.quiet)
                write(v, out_v, rows_v)
    finally:
        session.close()
        if store is not None:
            store.close()
    return written


def results_record(spec: RunSpec, v: VariantInfo, engine: dict[str, Any], tasks_out: dict[str, Any],
                   argv: list[str] | None, cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    ident = {k: val for k, val in v.identity.items()}
    ident["device"] = spec.model.device
    return {
        **header(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "label": v.label,
        "model": ident,
        **({"cluster": cluster} if cluster is not None else {}),
        "backend": engine,
        "run": {"command": argv or sys.argv, "batch_size": "auto" if spec.model.auto_batch else spec.model.batch_size,
                "limit": spec.task_cfg.limit, "num_fewshot": spec.task_cfg.num_fewshot, "seed": spec.task_cfg.seed,
                "samples": spec.task_cfg.samples, "temperature": spec.task_cfg.temperature},
        "tasks": tasks_out,
    }


def plan_run(variants: list[VariantInfo], mixes: bool, batch_size: int | dict[str, int], kind: str,
             loaded: list[tuple[Task, list[Doc], str]],
             store: Store, spec: RunSpec) -> list[tuple[list[str], int, list[list[Request]], Plan]]:
    """Every (variants, task) of the run planned up front, with the batches a one-process run would send:
    [(labels, index into loaded, per-doc requests, plan)]."""
    model = ModelInfo(kind)
    out: list[tuple[list[str], int, list[list[Request]], Plan]] = []
    for t, (task, docs, _) in enumerate(loaded):
        per_doc = build_requests(task, docs, model)
        flat = [r for reqs in per_doc for r in reqs]
        if mixes:
            keyed = {v.label: (model_key(v.identity), flat) for v in variants}
            out.append(([v.label for v in variants], t, per_doc, plan_mixed(
                keyed, batch_size, store, spec.resume, f"{len(keyed)} variant(s) · {task.name}")))
            continue
        for v in variants:
            out.append(([v.label], t, per_doc, plan_requests(model_key(v.identity), flat, batch_size, store, spec.resume,
                                                              f"{v.label} · {task.name}", label=v.label)))
    return out


def run_on_ray(spec: RunSpec, run_dirs: dict[str, Path], loaded: list[tuple[Task, list[Doc], str]],
               argv: list[str] | None) -> list[Path]:
    """The run on a Ray cluster: replicas build the model; this process plans every batch as a one-process run
    would, has the replicas answer them (each stored as it returns), then scores and writes each variant."""
    from harness.execute.ray import RayExecutor

    assert spec.ray is not None
    written: list[Path] = []
    with RayExecutor(spec.model, spec.ray, spec.quiet) as ex:
        info = ex.info
        check_honoured(spec.task_cfg, loaded, ModelInfo(info.kind))
        store = Store.open(spec.output_dir / ".store.sqlite", spec.resume)
        try:
            jobs = plan_run(info.variants, info.mixes_variants, info.batch_sizes, info.kind, loaded, store, spec)
            t0 = time.time()
            ex.answer([plan for *_, plan in jobs], store, f"{len(info.variants)} variant(s) · {len(loaded)} task(s) on ray")
            outs: dict[str, dict[str, Any]] = {v.label: {} for v in info.variants}
            rows: dict[str, dict[str, list[dict[str, Any]]]] = {v.label: {} for v in info.variants}
            for labels, t, per_doc, plan in jobs:
                task, docs, data_hash = loaded[t]
                for label in labels:
                    outs[label][task.name], rows[label][task.name] = score_task(
                        task, docs, per_doc, plan.answers[label], data_hash, ModelInfo(info.kind),
                        max(0.0, (plan.done_at or t0) - t0))
            engine, cluster = {**info.engine, "options": spec.model.backend_options}, ex.describe()
            for v in info.variants:
                path = write_run_dir(run_dirs[v.label], results_record(spec, v, engine, outs[v.label], argv, cluster),
                                     rows[v.label])
                written.append(path)
                log(f"wrote {path}", spec.quiet)
        finally:
            store.close()
    return written
