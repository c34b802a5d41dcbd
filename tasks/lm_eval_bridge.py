"""`lm-eval:<task>`: run any installed lm-eval (0.4.x) task or group through the harness's own model loading.

How: lm-eval builds its requests (`task.build_all_requests`: prompts, few-shot, choices) and we translate each
Instance into our typed requests: `loglikelihood` (and `multiple_choice`, which lm-eval issues as loglikelihoods)
-> `LogLikelihood`, `generate_until` -> `Generate` (until -> stop, max_gen_toks, temperature, repeats -> n).
Our runner answers them with whatever our loader built (base + adapter, 4-bit, several adapters on one base,
the answer store, --resume), and lm-eval scores them: its filters (`FilterEnsemble.apply`), `process_results`
and aggregation functions, per subtask. This is more robust than handing lm-eval a model object: nothing of
lm-eval's model layer (HFLM, batching, device placement) is involved, so PEFT/bitsandbytes models and our store
work unchanged, and the scores are lm-eval's own functions applied to the same answers.

Names: `lm-eval:arc_easy`, `lm-eval:mmlu` (a group: each subtask is scored by lm-eval and the group metric is
the size-weighted mean, as lm-eval's `aggregate_metric_list`; subtasks go to `details`). A group's docs are
interleaved across subtasks, so `--limit N` takes a balanced sample. `--num-fewshot k` (0 included) overrides the
task's default, as does every generation flag given explicitly, even at its default value (`--temperature 0` over a
YAML's do_sample, `--samples 1` over its repeats, `--max-new-tokens` over max_gen_toks); results.json records what
the requests carried. `--seed` is lm-eval's few-shot seed (1234 by default in both). Local task YAMLs:
`--task-option include_path=DIR`. `loglikelihood_rolling` (perplexity) tasks are not supported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.errors import HarnessError
from harness.metrics.stats import Metric
from harness.requests import Answer, Generate, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task, TaskConfig, generate_request


def _lm_eval() -> Any:
    try:
        import lm_eval  # noqa: F401
        from lm_eval import tasks as lm_tasks
    except ImportError:
        raise HarnessError("lm-eval tasks need the lm-eval package: pip install 'lm-eval==0.4.13'") from None
    return lm_tasks


_MANAGERS: dict[tuple[str | None, bool], Any] = {}


def _manager(include: str | None, defaults: bool) -> Any:
    key = (include, defaults)
    if key not in _MANAGERS:
        _MANAGERS[key] = _lm_eval().TaskManager(include_path=include, include_defaults=defaults)
    return _MANAGERS[key]


def _leaves(d: dict[Any, Any], out: dict[str, Any]) -> dict[str, Any]:
    for k, v in d.items():
        if isinstance(v, dict):
            _leaves(v, out)
        elif v is not None:
            out[k if isinstance(k, str) else str(getattr(k, "task_name", k))] = v
    return out


def _metric_name(metric: str, filter_key: str) -> str:
    return metric if filter_key == "none" else f"{metric}_{filter_key}"


class LmEvalTask(Task):
    name = "lm-eval:"
    version = "lm-eval-0.4"
    output_type = "loglikelihood"
    metrics = ()
    data_source = "whatever the lm-eval task config names (hub or local via --task-option include_path=DIR)"
    option_keys = {"include_path": "directory of extra lm-eval task YAMLs"}
    sampling = True  # a task's repeats (e.g. gsm8k_cot_self_consistency) or --samples

    def __init__(self, cfg: TaskConfig | None, task_name: str) -> None:
        super().__init__(cfg)
        self.task_name = task_name
        self.name = f"lm-eval:{task_name}"
        self._subtasks: dict[str, Any] = {}
        self._instances: dict[str, list[Any]] = {}
        self._group_weighting: dict[str, bool] = {}
        self._metric_of: dict[str, str] = {}  # our metric name -> lm-eval's metric (aggregation key)
        self._fewshot: dict[str, int] = {}  # per subtask: the exemplars its prompts hold

    # --- data: lm-eval builds the requests ---------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        lm_tasks = _lm_eval()
        include = self.option("include_path")
        tm = _manager(include, defaults=False) if include else None  # local YAMLs alone index in a blink
        if tm is None or self.task_name not in tm.all_tasks:
            tm = _manager(include, defaults=True)  # every installed task: ~10 s to index, so kept per process
        if self.task_name not in tm.all_tasks:
            hint = f"include_path {include}" if include else "add local YAMLs with --task-option include_path=DIR"
            raise HarnessError(f"--tasks lm-eval:{self.task_name}: not a task, group or tag lm-eval knows ({hint})")
        from datasets.exceptions import DatasetsError

        try:
            task_dict = lm_tasks.get_task_dict([self.task_name], tm)
        except (OSError, DatasetsError) as e:  # the hub unreachable, data files missing or unreadable: one line
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise HarnessError(f"lm-eval task {self.task_name}: could not load its data ({reason}); offline, write a local "
                               "task YAML (dataset_path: json, dataset_kwargs.data_files) and pass "
                               "--task-option include_path=DIR") from None
        for group, sub in task_dict.items():
            agg = getattr(getattr(group, "config", None), "aggregate_metric_list", None)
            if isinstance(sub, dict) and agg:
                self._group_weighting = {a["metric"] if isinstance(a, dict) else a.metric:
                                         (a.get("weight_by_size", True) if isinstance(a, dict) else a.weight_by_size)
                                         for a in agg}
        return _leaves(task_dict, {})

    def docs(self) -> list[Doc]:
        leaves = self._load()
        per_leaf: list[list[Doc]] = []
        kinds = set()
        for leaf, task in leaves.items():
            if self.cfg.num_fewshot is not None:  # given, 0 included, it wins over the task's default
                task.set_config(key="num_fewshot", value=self.cfg.num_fewshot)
            elif task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            self._fewshot[leaf] = int(task.get_config("num_fewshot") or 0)
            task.set_fewshot_seed(seed=self.cfg.seed)
            task.build_all_requests(limit=None, rank=0, world_size=1)
            by_doc: dict[int, list[Any]] = {}
            for inst in task.instances:
                if inst.request_type == "loglikelihood_rolling":
                    raise HarnessError(f"lm-eval task {leaf} uses loglikelihood_rolling (perplexity) requests, "
                                       "which the harness does not answer")
                kinds.add(inst.request_type)
                by_doc.setdefault(inst.doc_id, []).append(inst)
            self._subtasks[leaf] = task
            docs = []
            for doc_id in sorted(by_doc):
                insts = sorted(by_doc[doc_id], key=lambda i: i.idx)
                key = f"{leaf}/{doc_id}"
                self._instances[key] = insts
                docs.append({"id": key, "task": leaf, "doc_id": doc_id,
                             "requests": [[i.request_type, list(i.args), i.repeats] for i in insts]})
            per_leaf.append(docs)
        self.output_type = "generate" if kinds == {"generate_until"} else ("loglikelihood" if kinds <= {"loglikelihood"}
                                                                            else "mixed")
        self.source_description = f"lm-eval {self.task_name}: " + ", ".join(
            f"{leaf} ({t.config.dataset_path}{'/' + t.config.dataset_name if t.config.dataset_name else ''})"
            for leaf, t in list(leaves.items())[:5]) + (" ..." if len(leaves) > 5 else "")
        # interleave subtasks so --limit N samples every subtask (lm-eval applies its limit per subtask)
        longest = max((len(d) for d in per_leaf), default=0)
        return [d[i] for i in range(longest) for d in per_leaf if i < len(d)]

    def supports_fewshot(self, model: ModelInfo) -> bool:
        return model.kind == "causal"

    def fewshot_used(self) -> int | dict[str, int]:
        values = set(self._fewshot.values())
        return values.pop() if len(values) == 1 else dict(self._fewshot)

    # --- requests: lm-eval Instances -> our typed requests -----------------------------------------------------
    def _generate(self, ctx: str, gen: dict[str, Any], repeats: int) -> Generate:
        """The task's generation settings, with every flag the user gave explicitly (its default value included:
        `--temperature 0` over a YAML's do_sample, `--samples 1` over its repeats) winning over them."""
        c = self.cfg
        until = gen.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        sample = bool(gen.get("do_sample")) and float(gen.get("temperature", 0) or 0) > 0
        temperature = float(gen.get("temperature", 0)) if sample else 0.0  # the task's own settings
        top_p = float(gen.get("top_p", 1.0) or 1.0) if sample else 1.0
        used = replace(c, temperature=c.temperature if c.explicit("temperature") else temperature,
                       top_p=c.top_p if c.explicit("top_p") else top_p,
                       samples=c.samples if c.explicit("samples") else int(repeats or 1))
        return generate_request(used, ctx, tuple(until), int(gen.get("max_gen_toks", 256)))

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        out: list[Request] = []
        for kind, args, repeats in doc["requests"]:
            if kind == "loglikelihood":
                out.append(LogLikelihood(args[0], args[1]))
            else:
                out.append(self._generate(args[0], dict(args[1] or {}), repeats))
        return out

    # --- scoring: lm-eval's filters, process_results and aggregations ------------------------------------------
    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        import copy

        task = self._subtasks[doc["task"]]
        insts = [copy.copy(i) for i in self._instances[doc["id"]]]
        for inst, ans in zip(insts, answers):
            inst.resps = [tuple(ans)] if inst.request_type == "loglikelihood" else list(ans)
            inst.filtered_resps = {}
        for f in getattr(task, "_filters", []):
            f.apply(insts)
        items: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        filtered = {}
        for key in insts[0].filtered_resps:
            filtered[key] = [i.filtered_resps[key] for i in insts]
            for m, v in task.process_results(insts[0].doc, filtered[key]).items():
                name = _metric_name(m, key)
                self._metric_of[name] = m
                items[name] = v
                if isinstance(v, (int, float, bool)):
                    metrics[name] = float(v)
        return {"task": doc["task"], "arguments": [r[1] for r in doc["requests"]],
                "resps": [list(a) if isinstance(a, tuple) else a for a in answers], "filtered_resps": filtered,
                "target": str(task.doc_to_target(insts[0].doc)), "items": items, "metrics": metrics}

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from lm_eval.api.metrics import aggregate_subtask_metrics, pooled_sample_stderr, stderr_for_metric

        by_leaf: dict[str, list[dict[str, Any]]] = {}
        for s in samples:
            by_leaf.setdefault(s["task"], []).append(s)
        sub: dict[str, dict[str, Any]] = {}
        for leaf, rows in by_leaf.items():
            task = self._subtasks[leaf]
            aggs = task.aggregation()
            res: dict[str, Any] = {"n": len(rows)}
            for name in rows[0]["items"]:
                fn = aggs.get(self._metric_of.get(name, name))
                if fn is None:
                    continue
                values = [r["items"][name] for r in rows]
                se_fn = stderr_for_metric(fn, bootstrap_iters=1000)
                se = se_fn(values) if se_fn is not None and len(values) > 1 else None
                res[name] = {"value": float(fn(values)), "stderr": None if se is None else float(se)}
            sub[leaf] = res
        if len(sub) == 1:
            [res] = sub.values()
            return {k: Metric(v["value"], v["stderr"]) for k, v in res.items() if k != "n"}
        out: dict[str, Any] = {}
        names = [k for k in next(iter(sub.values())) if k != "n" and all(k in r for r in sub.values())]
        for name in names:
            weight = self._group_weighting.get(self._metric_of.get(name, name), True)
            vals = [r[name]["value"] for r in sub.values()]
            sizes = [r["n"] for r in sub.values()]
            value = aggregate_subtask_metrics(vals, sizes, weight)
            ses = [r[name]["stderr"] for r in sub.values()]
            se = pooled_sample_stderr(ses, sizes) if all(x is not None for x in ses) and all(n > 1 for n in sizes) else None
            out[name] = Metric(float(value), None if se is None else float(se))
        out["subtasks"] = sub
        return out


def make(cfg: TaskConfig, full_name: str) -> Task:
    """Entry point for the `lm-eval:` prefix: `lm-eval:<task or group>`."""
    name = full_name.split(":", 1)[1].strip()
    if not name:
        raise HarnessError("--tasks lm-eval:<task>: give an lm-eval task name after the colon (e.g. lm-eval:arc_easy)")
    return LmEvalTask(cfg, name)
