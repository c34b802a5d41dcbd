"""math_verify: is a given solution to a math question correct? True/False (NYU DL 2024 competition layout).

Rows: `question`, `answer` (the provided final answer), `solution` (the worked explanation),
`is_correct` (bool). Data: hub `ad6398/nyu-dl-teach-maths-comp`, or local CSV / JSONL / Parquet:
`--data-dir DIR` with DIR/math_verify/<split>.{parquet,jsonl,csv}, or `--task-option file=PATH`.
The default split is `validation`: a local validation file, else the last 1,000 rows of train
(the hub test split's labels are placeholders, all False; a split with a single label value
gets a warning that accuracy means nothing on it). `train_examples("train")` leaves those rows out.

Prompt: our own, laid out like the strongest competition entries (a role, the question, the
provided answer, the solution, a short checklist of calculations, logic and consistency, then a
True/False verdict). `--task-option prompt_template=FILE` replaces it ({question}, {answer},
{solution} are filled in; other braces are left alone, so LaTeX is safe).

Modes (`--task-option mode=`): `loglikelihood` (default for causal LMs) compares log P(" True")
and log P(" False"); `generate` parses the verdict from free text (`Final Output (True/False): True`,
`false.`, `The answer is TRUE because ...`); an output with no verdict counts as wrong and is
counted in `unparseable`. A seq-cls model gets (question + answer, solution) pairs, label 1 = True.
Metrics: accuracy, precision/recall/F1 of each class; the confusion matrix goes in details.
`--num-fewshot k` (causal modes): k rows of the train split (as for training: without the rows validation took),
drawn by --seed, never the evaluated row, each the prompt plus ` True`/` False` and a blank line (chat: turns).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from harness.data import Hub, find_local, require, rows_from
from harness.errors import HarnessError
from harness.metrics import classification as cm
from harness.requests import Answer, Classify, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo, generate_request
from tasks._common import FEWSHOT_DELIMITER, FewShotTask

HUB = "ad6398/nyu-dl-teach-maths-comp"
VALIDATION_ROWS = 1000
COLUMNS = ("question", "answer", "solution", "is_correct")
NAMES = ("false", "true")  # label ids: 0 = False, 1 = True
PROMPT = """You are a meticulous mathematics teacher grading a student's work.

Question:
{question}

Provided answer:
{answer}

Solution:
{solution}

Check the solution before you decide:
1. Calculations: is every arithmetic and algebraic step computed correctly?
2. Logic: does each step follow from the question and from the steps before it?
3. Consistency: does the solution's result match the provided answer?

Reply True if the provided answer is correct, otherwise False.
Final Output (True/False):"""
STOP = ("\n\n", "</s>", "<|im_end|>", "<|eot_id|>")
_FINAL = re.compile(r"final\s+(?:output|answer|verdict)[^:\n]*:\s*\**\s*(true|false)\b", re.I)
_WORD = re.compile(r"\b(true|false)\b", re.I)


def parse_verdict(text: str) -> bool | None:
    """True/False from a model's free text, or None when it gives no verdict.

    An explicit `Final Output (True/False): X` (or `Final answer: X`) wins; otherwise the first
    standalone true/false word, whatever its case and the words around it.
    """
    m = _FINAL.search(text)
    if m is None:
        m = _WORD.search(text)
    return None if m is None else m.group(1).lower() == "true"


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "t", "1.0"):
        return True
    if text in ("false", "0", "no", "f", "0.0"):
        return False
    raise HarnessError(f"{where}: is_correct {value!r} is not True/False")


class MathVerify(FewShotTask):
    name = "math_verify"
    version = "1"
    metrics = ("acc", "f1_true", "f1_false")
    output_type = "loglikelihood|generate|classify"
    option_keys = {"mode": "loglikelihood (default) or generate, for causal LMs", "file": "evaluation file",
                   "split": "validation (default), train or test", "prompt_template": "prompt file with {question}, {solution}"}
    data_source = (f"hub {HUB} (validation = last {VALIDATION_ROWS} rows of train); "
                   "local DIR/math_verify/{split}.{parquet,jsonl,csv} or --task-option file=PATH")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "output_type": "loglikelihood | generate (mode=) | classify (seq-cls)"}

    # --- data ---------------------------------------------------------------------------
    def _layouts(self, split: str) -> tuple[str, ...]:
        return tuple(f"math_verify/{split}.{ext}" for ext in ("parquet", "jsonl", "csv", "json"))

    def _raw(self, split: str) -> tuple[str, list[dict[str, Any]]]:
        """(source, rows) of a split: local file, else the hub; `validation` falls back to the tail of train."""
        option = self.option("file")
        if option and split != "train":
            rows, where = rows_from(option, None, (), None, flag="--task-option file")
            return where, rows
        if split == "validation" and find_local(self.cfg.data_dir, *self._layouts(split)) is None:
            src, rows = self._raw("train")
            return f"{src}[-{VALIDATION_ROWS}:]", rows[-VALIDATION_ROWS:]
        rows, where = rows_from(None, self.cfg.data_dir, self._layouts(split), Hub(HUB, None, split))
        return where, rows

    def _rows(self, split: str) -> tuple[list[Doc], str]:
        """(rows, where) of a split; train leaves out the rows the validation split took from its tail."""
        src, raw = self._raw(split)
        held_out = find_local(self.cfg.data_dir, *self._layouts("validation")) is None and not self.option("file")
        if split == "train" and held_out:
            raw = raw[:-VALIDATION_ROWS] if len(raw) > VALIDATION_ROWS else []  # the tail is the validation split
            src = f"{src}[:-{VALIDATION_ROWS}]"
        docs = []
        for i, r in enumerate(raw, 1):
            where = f"{src} row {i}"
            require(r, COLUMNS, where)
            docs.append({"id": str(i - 1), "question": str(r["question"]), "answer": str(r["answer"]),
                         "solution": str(r["solution"]), "label": int(_as_bool(r["is_correct"], where))})
        return docs, src

    def docs(self) -> list[Doc]:
        docs, self.source_description = self._rows(self.option("split", "validation") or "validation")
        self.draw_fewshot(docs)
        return docs

    def fewshot_pool(self) -> tuple[list[Doc], str]:
        return self._rows("train")

    def fewshot_key(self, row: Doc) -> Hashable:
        return row["question"], row["answer"], row["solution"], row["label"]

    # --- prompt and requests ------------------------------------------------------------
    def template(self) -> str:
        path = self.option("prompt_template")
        if not path:
            return PROMPT
        p = Path(path)
        if not p.is_file():
            raise HarnessError(f"--task-option prompt_template={path}: file not found")
        text = p.read_text(encoding="utf-8")
        missing = [k for k in ("{question}", "{solution}") if k not in text]
        if missing:
            raise HarnessError(f"{path}: prompt template lacks {', '.join(missing)}")
        return text.rstrip("\n")

    def prompt(self, doc: Doc) -> str:
        text = self.template()
        for k in ("question", "answer", "solution"):
            text = text.replace("{" + k + "}", doc[k])
        return text

    def check(self) -> None:
        if self.option("mode", "loglikelihood") not in ("loglikelihood", "generate"):
            raise HarnessError(f"--task-option mode={self.option('mode')}: use loglikelihood or generate")
        if self.option("prompt_template"):
            self.template()

    def mode(self, model: ModelInfo) -> str:
        if model.kind == "seq-cls":
            return "classify"
        mode = self.option("mode", "loglikelihood")
        if mode not in ("loglikelihood", "generate"):
            raise HarnessError(f"--task-option mode={mode}: use loglikelihood or generate")
        return mode

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        mode = self.mode(model)
        if mode == "classify":
            return [Classify((f"{doc['question']}\nAnswer: {doc['answer']}", doc["solution"]))]
        if model.kind != "causal":
            raise HarnessError(f"task {self.name}: needs a causal LM or a text classifier, not a {model.kind} model")
        if mode == "generate":
            return [generate_request(self.cfg, self.fewshot_prompt(doc, self.cfg.chat_template), STOP, max_new_tokens=32)]
        prompt = self.fewshot_prompt(doc, chat=False)
        assert isinstance(prompt, str)
        return [LogLikelihood(prompt, " False"), LogLikelihood(prompt, " True")]

    def target(self, doc: Doc) -> str:
        return " True" if doc["label"] else " False"

    def fewshot_prompt(self, doc: Doc, chat: bool) -> str | tuple[tuple[str, str], ...]:
        """Exemplars as the zero-shot prompt plus ` True`/` False`, each followed by a blank line (chat: turns)."""
        shots = self.shots(doc)
        if chat:
            turns = [t for s in shots for t in (("user", self.prompt(s)), ("assistant", self.target(s).strip()))]
            return (*turns, ("user", self.prompt(doc)))
        return "".join(f"{self.prompt(s)}{self.target(s)}{FEWSHOT_DELIMITER}" for s in shots) + self.prompt(doc)

    # --- scoring ------------------------------------------------------------------------
    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        mode = self.mode(model)
        rec: dict[str, Any] = {"label": bool(doc["label"])}
        parsed: bool | None
        if mode == "generate":
            rec["output"] = answers[0][0]
            parsed = parse_verdict(answers[0][0])
        elif mode == "loglikelihood":
            ll_false, ll_true = float(answers[0][0]), float(answers[1][0])
            rec["loglikelihoods"] = {" False": ll_false, " True": ll_true}
            parsed = ll_true > ll_false
        else:
            logits = [float(x) for x in answers[0]]
            if len(logits) != 2:
                raise HarnessError(f"task {self.name} needs a 2-class head, the model's head has {len(logits)} outputs")
            rec["logits"] = logits
            parsed = logits[1] > logits[0]
        rec["pred"] = parsed
        # An unparseable output is wrong whatever the label: it is scored as the opposite class.
        pred = (1 - doc["label"]) if parsed is None else int(parsed)
        rec["pred_label"] = pred
        rec["metrics"] = {"acc": float(pred == doc["label"]), "unparseable": float(parsed is None)}
        return rec

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        gold = [int(s["label"]) for s in samples]
        pred = [s["pred_label"] for s in samples]
        out: dict[str, Any] = {"acc": cm.accuracy(gold, pred)}
        out.update(cm.per_class_prf(gold, pred, [1, 0], ["true", "false"], seed=self.cfg.seed))
        if any("output" in s for s in samples):  # generate mode
            from harness.metrics.stats import mean_stderr

            out["unparseable"] = mean_stderr([s["metrics"]["unparseable"] for s in samples])
            out["unparseable_count"] = int(sum(s["metrics"]["unparseable"] for s in samples))
        out["confusion_matrix"] = cm.confusion(gold, pred, [0, 1], ["False", "True"])
        if cm.warn_single_label(self.name, gold):
            out["warning"] = "every gold label is the same value: accuracy means nothing on this split"
        return out

    # --- training -----------------------------------------------------------------------
    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        """Causal: the evaluation prompt and " True"/" False"; seq-cls: the input pair and label 1 = True."""
        rows, self.source_description = self._rows(split)  # the trainer records where its examples came from
        if model.kind == "seq-cls":
            return [{"inputs": (f"{r['question']}\nAnswer: {r['answer']}", r["solution"]), "label": r["label"]}
                    for r in rows]
        return [{"prompt": self.prompt(r), "target": self.target(r)} for r in rows]
