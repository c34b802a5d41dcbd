"""GLUE (Wang et al., 2018): nine sentence(-pair) classification tasks, their metrics and the leaderboard score.

Tasks and metrics: cola (MCC), sst2 (acc), mrpc (acc, F1), stsb (Pearson, Spearman), qqp (acc, F1),
mnli and mnli_mismatched (acc), qnli (acc), rte (acc), wnli (acc). The `glue` group evaluates all
of them as one entry: each task's metrics (`cola_mcc`, `mrpc_f1`, ...) plus `score`, the GLUE
leaderboard average (each task's metrics averaged, MNLI matched and mismatched averaged into one
task, then the unweighted mean of the nine tasks).

Model modes, picked from the loaded model (the `model` argument's kind):
- seq-cls: an encoder with a classification head (a LoRA adapter brings its saved head); one
  Classify request per row with the text or text pair; STS-B needs a 1-output regression head.
- causal: exactly lm-eval 0.4's GLUE prompts and label words (checked in the tests), one LogLikelihood
  request per label word; the prediction is the most likely word. STS-B (which lm-eval lacks): the
  expected score under the softmax over " 0".." 5". `--num-fewshot k`: k train rows (DIR/SST-2/train.tsv,
  ..., `train_file=`, or the hub's train split), each the prompt plus its label word and a blank line,
  drawn by --seed, never the evaluated row (seq-cls models take no exemplars: an error).

Data: hub `nyu-mll/glue` (validation splits), or `--data-dir DIR` in the GLUE distribution's layout
(DIR/SST-2/dev.tsv, DIR/CoLA/dev.tsv, ...; also the raw CoLA, original STS-B and SuperGLUE RTE jsonl
files). GLUE .tsv files are read with no quote handling, as the GLUE baselines read them.
Options: `split=validation[:50%]` (slices of a split), `eval_file=PATH`, `train_file=PATH`
(inside the group, prefix them with `<task>.`; an unprefixed `split` applies to every task).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import as_row, cascade, load_hub, read_table, typed
from harness.errors import HarnessError
from harness.metrics import classification as cm
from harness.metrics.stats import Metric
from harness.requests import Answer, Classify, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task, TaskConfig
from tasks._common import FEWSHOT_DELIMITER, FewShotTask


@dataclass(frozen=True)
class Spec:
    name: str
    config: str  # hub config of nyu-mll/glue
    eval_split: str  # hub split evaluated by default
    texts: tuple[tuple[str, ...], ...]  # per input: the column names it has in the hub / GLUE tsv / other layouts
    label: tuple[str, ...]  # label column names
    names: tuple[str, ...] | None  # class names by label id (hub ids); None = regression
    metrics: tuple[str, ...]
    dev_files: tuple[str, ...]
    train_files: tuple[str, ...]
    prompt: str  # causal mode; {0}, {1} are the inputs
    words: tuple[str, ...]  # causal mode label words, by label id (STS-B: the scores 0..5)
    headerless: tuple[str, ...] = ()  # column names of header-less files (raw CoLA, original STS-B)
    skip_labels: tuple[str, ...] = ()  # rows GLUE leaves out (MNLI jsonl rows without a gold label)
    siblings: dict[str, str] = field(default_factory=dict)  # local file -> file appended to it (CoLA dev = in + out)


NLI3 = ("entailment", "neutral", "contradiction")
SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("cola", "cola", "validation", (("sentence",),), ("label",), ("unacceptable", "acceptable"), ("mcc",),
         ("CoLA/dev.tsv", "CoLA/cola_public_raw_in_domain_dev.tsv", "cola_public/raw/in_domain_dev.tsv"),
         ("CoLA/train.tsv", "cola_public/raw/in_domain_train.tsv"),
         "{0}\nQuestion: Does this sentence make sense?\nAnswer:", (" no", " yes"),
         headerless=("source", "label", "original_label", "sentence"),
         siblings={"cola_public_raw_in_domain_dev.tsv": "cola_public_raw_out_of_domain_dev.tsv",
                   "in_domain_dev.tsv": "out_of_domain_dev.tsv"}),
    Spec("sst2", "sst2", "validation", (("sentence",),), ("label",), ("negative", "positive"), ("acc",),
         ("SST-2/dev.tsv",), ("SST-2/train.tsv",),
         "{0}\nQuestion: Is this sentence positive or negative?\nAnswer:", (" negative", " positive")),
    Spec("mrpc", "mrpc", "validation", (("sentence1", "#1 String"), ("sentence2", "#2 String")), ("label", "Quality"),
         ("not_equivalent", "equivalent"), ("acc", "f1"), ("MRPC/dev.tsv",), ("MRPC/train.tsv",),
         "Sentence 1: {0}\nSentence 2: {1}\nQuestion: Do both sentences mean the same thing?\nAnswer:", (" no", " yes")),
    Spec("stsb", "stsb", "validation", (("sentence1",), ("sentence2",)), ("label", "score"), None, ("pearson", "spearman"),
         ("STS-B/dev.tsv", "STS-B/original/sts-dev.tsv", "STS-B/original_sts-dev.tsv", "stsbenchmark/sts-dev.csv"),
         ("STS-B/train.tsv", "STS-B/original/sts-train.tsv", "stsbenchmark/sts-train.csv"),
         "Sentence 1: {0}\nSentence 2: {1}\nQuestion: How similar are the two sentences, from 0 (unrelated) to 5 "
         "(same meaning)?\nAnswer:", (" 0", " 1", " 2", " 3", " 4", " 5"),
         headerless=("genre", "filename", "year", "old_index", "score", "sentence1", "sentence2")),
    Spec("qqp", "qqp", "validation", (("question1",), ("question2",)), ("label", "is_duplicate"),
         ("not_duplicate", "duplicate"), ("acc", "f1"), ("QQP/dev.tsv",), ("QQP/train.tsv",),
         "Question 1: {0}\nQuestion 2: {1}\nQuestion: Do both questions ask the same thing?\nAnswer:", (" no", " yes")),
    Spec("mnli", "mnli", "validation_matched", (("premise", "sentence1"), ("hypothesis", "sentence2")),
         ("label", "gold_label"), NLI3, ("acc",),
         ("MNLI/dev_matched.tsv", "multinli_1.0/multinli_1.0_dev_matched.jsonl"),
         ("MNLI/train.tsv", "multinli_1.0/multinli_1.0_train.jsonl"),
         "{0}\nQuestion: {1} True, False or Neither?\nAnswer:", (" True", " Neither", " False"), skip_labels=("-",)),
    Spec("mnli_mismatched", "mnli", "validation_mismatched", (("premise", "sentence1"), ("hypothesis", "sentence2")),
         ("label", "gold_label"), NLI3, ("acc",),
         ("MNLI/dev_mismatched.tsv", "multinli_1.0/multinli_1.0_dev_mismatched.jsonl"),
         ("MNLI/train.tsv", "multinli_1.0/multinli_1.0_train.jsonl"),
         "{0}\nQuestion: {1} True, False or Neither?\nAnswer:", (" True", " Neither", " False"), skip_labels=("-",)),
    Spec("qnli", "qnli", "validation", (("question",), ("sentence",)), ("label",), ("entailment", "not_entailment"),
         ("acc",), ("QNLI/dev.tsv",), ("QNLI/train.tsv",),
         "{0}\n{1}\nQuestion: Does this response answer the question?\nAnswer:", (" yes", " no")),
    Spec("rte", "rte", "validation", (("sentence1", "premise"), ("sentence2", "hypothesis")), ("label",),
         ("entailment", "not_entailment"), ("acc",),
         ("RTE/dev.tsv", "RTE/val.jsonl", "RTE/superglue_RTE_val.jsonl"), ("RTE/train.tsv", "RTE/train.jsonl"),
         "{0}\nQuestion: {1} True or False?\nAnswer:", (" True", " False")),
    Spec("wnli", "wnli", "validation", (("sentence1",), ("sentence2",)), ("label",), ("not_entailment", "entailment"),
         ("acc",), ("WNLI/dev.tsv",), ("WNLI/train.tsv",),
         "{0}\nQuestion: {1} True or False?\nAnswer:", (" False", " True")),
)}
GLUE_TASKS = tuple(SPECS)  # the leaderboard's nine tasks, MNLI counted once (matched and mismatched averaged)
_SLICE = re.compile(r"^(?P<split>[A-Za-z_]+)(\[(?P<a>-?\d*%?):(?P<b>-?\d*%?)\])?$")


def _read_tsv(path: Path, spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) pairs of a GLUE .tsv: no quoting, optional BOM, header or the spec's header-less columns."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not lines:
        return []
    known = {c for alts in spec.texts for c in alts} | set(spec.label)
    has_header = bool(known & {c.strip() for c in lines[0]})
    if has_header:
        cols, body, first = [c.strip() for c in lines[0]], lines[1:], 2
    elif spec.headerless:
        cols, body, first = list(spec.headerless), lines, 1
    else:
        raise HarnessError(f"{path}:1: no header row (expected columns such as {', '.join(sorted(known))})")
    out = []
    for i, fields in enumerate(body, first):
        if not any(x.strip() for x in fields):
            continue
        if len(fields) < len(cols) and not has_header:
            raise HarnessError(f"{path}:{i}: {len(fields)} tab-separated fields, expected {len(cols)}")
        out.append((f"{path}:{i}", dict(zip(cols, fields))))
    return out


def _parse_slice(text: str) -> tuple[str, str | None, str | None]:
    m = _SLICE.match(text.strip())
    if not m:
        raise HarnessError(f"--task-option split={text}: use a split name, optionally sliced like validation[:50%]")
    return m["split"], m["a"], m["b"]


def _apply_slice(rows: list[Any], a: str | None, b: str | None) -> list[Any]:
    def idx(x: str | None, default: int) -> int:
        if x is None or x == "":
            return default
        if x.endswith("%"):
            return round(len(rows) * int(x[:-1]) / 100)
        return int(x)

    return rows[idx(a, 0): idx(b, len(rows))]


class GlueTask(FewShotTask):
    """One GLUE task; everything that differs between tasks is in its Spec."""

    version = "1"
    output_type = "classify|loglikelihood"  # classify for encoders, loglikelihood of label words for causal LMs
    option_keys = {"eval_file": "evaluation file (GLUE TSV, jsonl, csv, parquet)", "train_file": "training file",
                   "split": "split, with an optional slice: validation[50%:], train[:100]"}
    spec: Spec

    def __init__(self, cfg: TaskConfig | None = None, option_prefix: str = "") -> None:
        super().__init__(cfg)
        self.option_prefix = option_prefix  # "cola." inside the glue group

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "output_type": "classify (seq-cls) | loglikelihood (causal)"}

    def _opt(self, key: str) -> str | None:
        o = self.cfg.options
        shared = not self.option_prefix or key == "split"  # inside the group only `split` applies to every task
        return o.get(f"{self.name}.{key}") or (o.get(key) if shared else None)

    # --- data -------------------------------------------------------------------------
    def _load(self, split: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
        """(source description, [(where, raw row)]) of a split: option file, --data-dir layout, else the hub."""
        s = self.spec
        is_train = split == "train"
        key = "train_file" if is_train else "eval_file"
        option = self._opt(key)
        files = s.train_files if is_train else s.dev_files if split in ("validation", "dev") else ()

        def read(path: Path) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
            sibling = path.parent / s.siblings[path.name] if path.name in s.siblings and not option else None
            if sibling is not None and sibling.exists():  # GLUE's CoLA dev is the raw in-domain + out-of-domain dev
                return f"{path} + {sibling.name}", _read_tsv(path, s) + _read_tsv(sibling, s)
            if path.suffix.lower() == ".tsv" or path.name.startswith("sts-"):
                return str(path), _read_tsv(path, s)
            return str(path), [(f"{path} row {i}", r) for i, r in enumerate(read_table(path), 1)]

        def hub() -> tuple[tuple[str, list[tuple[str, dict[str, Any]]]], str]:
            hub_split = s.eval_split if split in ("validation", "dev") else split
            hint = f"{files[0]} (GLUE layout)" if files else f"--task-option eval_file=FILE for split {split}"
            src = f"hub:nyu-mll/glue/{s.config}/{hub_split}"
            rows = load_hub("nyu-mll/glue", s.config, hub_split, hint)
            return (src, [(f"{src} row {i}", r) for i, r in enumerate(rows, 1)]), src

        # DIR/SST-2/dev.tsv (the GLUE download's layout) or DIR/glue/SST-2/dev.tsv, so one --data-dir serves a mixed run
        layouts = (*files, *(f"glue/{f}" for f in files))
        found, _ = cascade(option or None, self.cfg.data_dir, layouts, read, hub, flag=f"--task-option {key}",
                           missing=None if files else f"no file for split {split}")
        return found

    def _label(self, value: Any, where: str) -> int | float:
        s = self.spec
        text = str(value).strip()
        if s.names is None:
            try:
                y = float(text)
            except ValueError:
                raise HarnessError(f"{where}: similarity score {text!r} is not a number") from None
            if not 0.0 <= y <= 5.0:
                raise HarnessError(f"{where}: similarity score {y} out of range 0..5")
            return y
        if text in s.names:
            return s.names.index(text)
        try:
            y = int(float(text))
        except ValueError:
            raise HarnessError(f"{where}: label {text!r} is not one of {', '.join(s.names)} "
                               f"or 0..{len(s.names) - 1}") from None
        if not 0 <= y < len(s.names) or float(text) != y:
            raise HarnessError(f"{where}: label {text} out of range (0..{len(s.names) - 1} = {', '.join(s.names)})")
        return y

    def _rows(self, split: str) -> tuple[list[Doc], str]:
        """(rows, where) of a split, optionally sliced (`validation[:50%]`)."""
        s = self.spec
        name, a, b = _parse_slice(split)
        src, raw = self._load(name)
        rows: list[Doc] = []
        for where, r in raw:
            as_row(r, where)
            col = next((c for c in s.label if c in r and r[c] is not None), None)
            if col is None:
                raise HarnessError(f"{where}: missing column {' or '.join(s.label)}")
            if str(r[col]).strip() in s.skip_labels:
                continue
            inputs = []
            for alts in s.texts:
                c = next((c for c in alts if c in r and r[c] is not None), None)
                if c is None:
                    raise HarnessError(f"{where}: missing column {' or '.join(alts)}")
                inputs.append(typed(r[c], str, c, where))
            rows.append({"id": str(len(rows)), "inputs": inputs, "label": self._label(r[col], where)})
        return _apply_slice(rows, a, b), src + (split[len(name):] if split != name else "")

    def docs(self) -> list[Doc]:
        docs, self.source_description = self._rows(self._opt("split") or "validation")
        self.draw_fewshot(docs)
        return docs

    def fewshot_pool(self) -> tuple[list[Doc], str]:
        return self._rows("train")

    def fewshot_key(self, row: Doc) -> Hashable:
        return tuple(row["inputs"]), row["label"]

    # --- prompts and requests -----------------------------------------------------------
    def prompt(self, doc: Doc) -> str:
        inputs = list(doc["inputs"])
        if self.spec.config == "mnli":  # as lm-eval: the hypothesis stripped and ending in a period
            h = inputs[1].strip()
            inputs[1] = h if h.endswith(".") else h + "."
        return self.spec.prompt.format(*inputs)

    def target(self, doc: Doc) -> str:
        """The label word (STS-B: the score rounded to 0..5), as the causal training target."""
        return f" {round(doc['label'])}" if self.spec.names is None else self.spec.words[doc["label"]]

    def context(self, doc: Doc) -> str:
        """Few-shot: each exemplar is the zero-shot prompt plus its label word and a blank line."""
        return "".join(f"{self.prompt(s)}{self.target(s)}{FEWSHOT_DELIMITER}" for s in self.shots(doc)) + self.prompt(doc)

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        kind = model.kind
        if kind == "seq-cls":
            return [Classify(tuple(doc["inputs"]))]
        if kind == "causal":
            ctx = self.context(doc)
            return [LogLikelihood(ctx, w) for w in self.spec.words]
        raise HarnessError(f"task {self.name}: needs a text classifier (seq-cls) or a causal LM, not a {kind} model")

    # --- scoring ------------------------------------------------------------------------
    def _check_head(self, logits: list[float]) -> None:
        s = self.spec
        want = 1 if s.names is None else len(s.names)
        if len(logits) != want:
            what = "a 1-output regression head" if s.names is None else f"a {want}-class head"
            raise HarnessError(f"task {self.name} needs {what}, the model's head has {len(logits)} outputs "
                               f"(use an adapter trained on {self.name}, or --num-labels {want})")

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        s = self.spec
        gold = doc["label"]
        rec: dict[str, Any] = {"inputs": doc["inputs"], "label": gold}
        if model.kind == "seq-cls":
            logits = [float(x) for x in answers[0]]
            self._check_head(logits)
            rec["logits"] = logits
            pred: float | int = logits[0] if s.names is None else max(range(len(logits)), key=logits.__getitem__)
        else:
            lls = [float(a[0]) for a in answers]
            rec["prompt"] = self.context(doc)
            rec["loglikelihoods"] = dict(zip(s.words, lls))
            if s.names is None:  # expected score under the distribution over the six score words
                top = max(lls)
                w = [math.exp(x - top) for x in lls]
                pred = sum(i * wi for i, wi in enumerate(w)) / sum(w)
            else:
                pred = max(range(len(lls)), key=lls.__getitem__)
        rec["pred"] = pred
        rec["metrics"] = {"abs_err": abs(float(pred) - float(gold))} if s.names is None else {"acc": float(pred == gold)}
        return rec

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        s = self.spec
        gold = [x["label"] for x in samples]
        pred = [x["pred"] for x in samples]
        seed = self.cfg.seed
        out: dict[str, Any] = {}
        if s.names is None:
            out["pearson"] = cm.pearson(pred, gold, seed=seed)
            out["spearman"] = cm.spearman(pred, gold, seed=seed)
            return out
        labels = list(range(len(s.names)))
        for m in s.metrics:
            if m == "acc":
                out["acc"] = cm.accuracy(gold, pred)
            elif m == "f1":
                out["f1"] = cm.f1(gold, pred, pos_label=1, seed=seed)
            elif m == "mcc":
                out["mcc"] = cm.mcc(gold, pred, seed=seed)
        out["confusion_matrix"] = cm.confusion(gold, pred, labels, s.names)
        return out

    # --- training -----------------------------------------------------------------------
    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        """Classifier rows {"inputs", "label"} (seq-cls) or {"prompt", "target"} with the label word (causal)."""
        rows, self.source_description = self._rows(split)  # the trainer records where its examples came from
        if model.kind == "causal":
            return [{"prompt": self.prompt(r), "target": self.target(r)} for r in rows]
        return [{"inputs": tuple(r["inputs"]), "label": r["label"]} for r in rows]


def _source(spec: Spec) -> str:
    return f"hub nyu-mll/glue ({spec.config}, {spec.eval_split}); local DIR/{spec.dev_files[0]}"


def _task_class(cls_name: str, name: str) -> type[GlueTask]:
    """One registrable class per GLUE task; everything that differs between them lives in SPECS."""
    spec = SPECS[name]
    return type(cls_name, (GlueTask,), {"name": name, "spec": spec, "metrics": spec.metrics,
                                        "data_source": _source(spec), "__module__": __name__})


CoLA = _task_class("CoLA", "cola")
SST2 = _task_class("SST2", "sst2")
MRPC = _task_class("MRPC", "mrpc")
STSB = _task_class("STSB", "stsb")
QQP = _task_class("QQP", "qqp")
MNLI = _task_class("MNLI", "mnli")
MNLIMismatched = _task_class("MNLIMismatched", "mnli_mismatched")
QNLI = _task_class("QNLI", "qnli")
RTE = _task_class("RTE", "rte")
WNLI = _task_class("WNLI", "wnli")


TASK_CLASSES: dict[str, type[GlueTask]] = {c.name: c for c in (CoLA, SST2, MRPC, STSB, QQP, MNLI, MNLIMismatched,
                                                               QNLI, RTE, WNLI)}


def glue_score(task_metrics: dict[str, dict[str, Metric]]) -> tuple[Metric, list[str]]:
    """The GLUE leaderboard score of per-task metrics: (score, the leaderboard tasks it covers).

    Each task's metrics are averaged (MRPC acc/F1, QQP acc/F1, STS-B Pearson/Spearman), MNLI
    matched and mismatched are averaged into one task, and the nine task scores are averaged.
    Stderr: tasks are independent samples; a task's own metrics are treated as fully correlated.
    """
    per_task: dict[str, tuple[float, float | None]] = {}
    for name, ms in task_metrics.items():
        vals = [m.value for k, m in ms.items() if k in SPECS[name].metrics]
        errs = [m.stderr for k, m in ms.items() if k in SPECS[name].metrics]
        se = None if any(e is None for e in errs) else sum(errs) / len(errs)  # type: ignore[arg-type]
        per_task[name] = (sum(vals) / len(vals), se)
    if "mnli" in per_task and "mnli_mismatched" in per_task:
        (a, ea), (b, eb) = per_task.pop("mnli"), per_task.pop("mnli_mismatched")
        per_task["mnli"] = ((a + b) / 2, None if ea is None or eb is None else math.sqrt(ea ** 2 + eb ** 2) / 2)
    scores = list(per_task.values())
    value = sum(v for v, _ in scores) / len(scores)
    errs = [e for _, e in scores]
    stderr = None if any(e is None for e in errs) else math.sqrt(sum(e ** 2 for e in errs)) / len(scores)  # type: ignore
    return Metric(value, stderr), sorted(per_task)


class GlueGroup(Task):
    """All GLUE tasks as one results entry: `<task>_<metric>` for each, plus the leaderboard `score`.

    Rows of the tasks are interleaved, so `--limit N` takes about N/10 rows of each. `--task-option
    tasks=cola,sst2` evaluates a subset; its average is then reported as `partial_score`.
    One model answers every task, so the group suits causal LMs; encoders are fine-tuned per task
    (STS-B needs a regression head), so run each task with its own adapter instead.
    """

    name = "glue"
    version = "1"
    output_type = "classify|loglikelihood"
    # `tasks`, `split` for every member, and each member's own keys as MEMBER.KEY (cola.eval_file=...)
    option_keys = {"tasks": "comma-separated members (default: all nine)", "split": GlueTask.option_keys["split"]}
    metrics = ("score",)
    data_source = "the nine GLUE tasks (see each task)"

    def __init__(self, cfg: TaskConfig | None = None) -> None:
        super().__init__(cfg)
        self.members = {n: c(self.cfg, option_prefix=f"{n}.") for n, c in TASK_CLASSES.items()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "output_type": "classify (seq-cls) | loglikelihood (causal)"}

    def _selected(self) -> list[GlueTask]:
        names = [n.strip() for n in (self.option("tasks") or ",".join(self.members)).split(",") if n.strip()]
        bad = [n for n in names if n not in self.members]
        if bad or not names:
            raise HarnessError(f"--task-option tasks=...: unknown GLUE task {', '.join(bad) or '(none)'} "
                               f"(known: {', '.join(self.members)})")
        return [self.members[n] for n in names]

    def docs(self) -> list[Doc]:
        per = [(m, m.docs()) for m in self._selected()]
        self.source_description = "; ".join(f"{m.name}: {m.source_description}" for m, _ in per)
        out: list[Doc] = []
        for i in range(max(len(d) for _, d in per)):
            for m, docs in per:
                if i < len(docs):
                    out.append({**docs[i], "id": f"{m.name}/{docs[i]['id']}", "task": m.name})
        return out

    def _member(self, doc: Doc) -> tuple[GlueTask, Doc]:
        """The member task of a group row, and the row under the member's own id (its exemplars are drawn by it)."""
        return self.members[doc["task"]], {**doc, "id": doc["id"].split("/", 1)[1]}

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        member, mdoc = self._member(doc)
        return member.requests(mdoc, model)

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        member, mdoc = self._member(doc)
        return {"task": doc["task"], **member.score(mdoc, answers, model)}

    def supports_fewshot(self, model: ModelInfo) -> bool:
        return all(m.supports_fewshot(model) for m in self.members.values())

    def fewshot_used(self) -> int | dict[str, int]:
        """One number when every member used the same k, else each member's."""
        used = {m.name: m.shots_used() for m in self._selected()}
        return next(iter(used.values())) if len(set(used.values())) == 1 else used

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        by_task: dict[str, list[dict[str, Any]]] = {}
        for s in samples:
            by_task.setdefault(s["task"], []).append(s)
        out: dict[str, Any] = {}
        task_metrics: dict[str, dict[str, Metric]] = {}
        for name, member_samples in by_task.items():
            agg = self.members[name].aggregate(member_samples)
            task_metrics[name] = {k: v for k, v in agg.items() if isinstance(v, Metric)}
            for k, v in agg.items():
                out[f"{name}_{k}"] = v
        score, covered = glue_score(task_metrics)
        full = set(by_task) == set(GLUE_TASKS)
        out["score" if full else "partial_score"] = score
        out["score_tasks"] = covered
        return out

    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        raise HarnessError("task glue is a group: train on one of its tasks (e.g. --task sst2)")


GlueGroup.option_keys.update({f"{n}.{k}": v for n in TASK_CLASSES for k, v in GlueTask.option_keys.items()})


def glue_group(cfg: TaskConfig) -> GlueGroup:
    return GlueGroup(cfg)
