"""SQuAD v1.1: extractive reading comprehension, scored by the official v1.1 exact match and F1 (Rajpurkar et al., 2016).

Data: hub `rajpurkar/squad` (validation), the official `dev-v1.1.json` (`DIR/squad/dev-v1.1.json` or
`DIR/squad-v1.1/dev-v1.1.json`), or `--task-option data=FILE`. The model continues
`Context: ...\\nQuestion: ...\\nAnswer:` (`--task-option prompt=...` with {context} and {question}; `\\n` for a newline);
the answer is cut at the first newline. Scores are the official ones: x100, max over gold answers
(harness/metrics/squad.py). Training examples (train-v1.1.json or hub train) use the first answer span as target.
`--num-fewshot k`: k questions of that train split (drawn by --seed, never the evaluated question), each the
zero-shot prompt plus ` {first answer}` and a blank line, open the prompt (with --chat-template: user/assistant turns).
Task options data=, train_data=, prompt= may be written `squad.KEY=` (which wins) when other tasks share the run.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from harness.data import cascade, load_hub
from harness.errors import HarnessError
from harness.metrics.squad import exact_match_score, f1_score, max_over_ground_truths, squad_questions
from harness.metrics.stats import Metric, mean_stderr
from harness.requests import Answer, Request
from harness.task import CAUSAL, Doc, ModelInfo, generate_request
from tasks._common import FEWSHOT_DELIMITER, FewShotTask

DEFAULT_PROMPT = "Context: {context}\nQuestion: {question}\nAnswer:"
STOP = ("\n",)
FILES = {"validation": ("squad/dev-v1.1.json", "squad-v1.1/dev-v1.1.json", "dev-v1.1.json"),
         "train": ("squad/train-v1.1.json", "squad-v1.1/train-v1.1.json", "train-v1.1.json")}


def _official_json(path: Path) -> dict[str, Any]:
    """The parsed file, or a one-line error naming it: missing, not JSON, or not the official {"data": [...]} shape."""
    if not path.exists():
        raise HarnessError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise HarnessError(f"{path}: not an official SQuAD file (expected an object with a `data` list)")
    return data


def read_official(path: Path) -> list[dict[str, Any]]:
    """Flat question rows (id, title, context, question, answers: [str]) of an official SQuAD json file."""
    data = _official_json(path)
    rows: list[dict[str, Any]] = []
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    row = {"id": str(qa["id"]), "title": article.get("title", ""), "context": paragraph["context"],
                           "question": qa["question"], "answers": [a["text"] for a in qa["answers"]]}
                    if not all(isinstance(t, str) for t in (row["context"], row["question"], *row["answers"])):
                        raise HarnessError(f"{path}: question {len(rows) + 1} ({row['id']}): context, question and "
                                           "answer texts must be strings")
                    rows.append(row)
    except KeyError as e:
        raise HarnessError(f"{path}: question {len(rows) + 1} is missing field {e}") from None
    except (TypeError, AttributeError):
        raise HarnessError(f"{path}: question {len(rows) + 1} is not in the official layout "
                           "(data[].paragraphs[].qas[] objects with id, question, answers[].text)") from None
    return rows


def load_official_dataset(path: Path) -> tuple[list[dict[str, Any]], Any]:
    """(`data` list, `version`) of an official file, checked enough that evaluation cannot crash half way."""
    data = _official_json(path)
    try:
        for qa in squad_questions(data["data"]):
            if not isinstance(qa["id"], str) or not all(isinstance(a["text"], str) for a in qa["answers"]):
                raise HarnessError(f"{path}: question {qa['id']!r} has a non-string id or answer")
    except (KeyError, TypeError) as e:
        raise HarnessError(f"{path}: a question is missing field {e}") from None
    return data["data"], data.get("version")


def _hub_rows(split: str) -> tuple[list[dict[str, Any]], str]:
    """The hub split in the flat shape `read_official` gives."""
    rows = load_hub("rajpurkar/squad", None, split, FILES[split][0])
    return [{"id": str(r["id"]), "title": r.get("title", ""), "context": r["context"], "question": r["question"],
             "answers": list(r["answers"]["text"])} for r in rows], f"hub:rajpurkar/squad/{split}"


class SQuAD(FewShotTask):
    name = "squad"
    version = "1"
    output_type = "generate"
    metrics = ("exact_match", "f1")
    data_source = "hub rajpurkar/squad (validation); local DIR/squad/dev-v1.1.json (official format)"

    option_keys = {"data": "dev file (official SQuAD v1.1 JSON)", "train_data": "training file (same format)",
                   "prompt": "prompt template with {context} and {question}"}

    def _rows(self, split: str) -> tuple[list[dict[str, Any]], str]:
        key = "data" if split == "validation" else "train_data"
        return cascade(self.option(key) or None, self.cfg.data_dir, FILES[split], read_official, lambda: _hub_rows(split),
                       flag=f"--task-option {key}", missing=f"none of {', '.join(FILES[split])}")

    def docs(self) -> list[Doc]:
        rows, where = self._rows("validation")
        self.source_description = where
        seen: set[str] = set()
        for r in rows:
            if r["id"] in seen:
                raise HarnessError(f"{where}: duplicate question id {r['id']}")
            seen.add(r["id"])
        self.draw_fewshot(rows)
        return rows

    def fewshot_pool(self) -> tuple[list[Doc], str]:
        rows, where = self._rows("train")
        return [r for r in rows if r["answers"]], where

    def fewshot_key(self, row: Doc) -> Hashable:
        return row["context"], row["question"]

    def text(self, doc: Doc) -> str:
        template = (self.option("prompt") or DEFAULT_PROMPT).replace("\\n", "\n")
        for key in ("{context}", "{question}"):
            if key not in template:
                raise HarnessError(f"--task-option prompt={template!r}: the template needs a {key} placeholder")
        return template.format(context=doc["context"], question=doc["question"])

    def prompt(self, doc: Doc) -> str | tuple[tuple[str, str], ...]:
        """The zero-shot prompt (also the training prompt)."""
        return self.fewshot_prompt(doc, [])

    def fewshot_prompt(self, doc: Doc, shots: list[Doc] | None = None) -> str | tuple[tuple[str, str], ...]:
        """Exemplars as the zero-shot prompt plus ` {first answer}`, each followed by a blank line (chat: turns)."""
        shots = self.shots(doc) if shots is None else shots
        if self.cfg.chat_template:
            turns = [t for s in shots for t in (("user", self.text(s)), ("assistant", s["answers"][0]))]
            return (*turns, ("user", self.text(doc)))
        return "".join(f"{self.text(s)} {s['answers'][0]}{FEWSHOT_DELIMITER}" for s in shots) + self.text(doc)

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        return [generate_request(self.cfg, self.fewshot_prompt(doc), STOP, max_new_tokens=32)]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        output = answers[0][0]
        answer = output.split("\n")[0].strip()
        em = max_over_ground_truths(exact_match_score, answer, doc["answers"])
        f1 = max_over_ground_truths(f1_score, answer, doc["answers"])
        return {"output": output, "extracted": answer, "target": doc["answers"], "official": {"em": em, "f1": f1},
                "metrics": {"exact_match": 100.0 * em, "f1": 100.0 * f1}}

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Metric]:
        """Value as the official script sums it (x100 once at the end), stderr of the per-question scores."""
        out = {}
        for m, key in (("exact_match", "em"), ("f1", "f1")):
            total = 0
            for s in samples:
                total += s["official"][key]
            se = mean_stderr([s["metrics"][m] for s in samples]).stderr
            out[m] = Metric(100.0 * total / len(samples) if samples else float("nan"), se)
        return out

    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        """Evaluation prompt; target = " " + the first gold answer span."""
        if split not in FILES:
            raise HarnessError(f"squad: no {split!r} split (use train or validation)")
        rows, _ = self._rows(split)
        return [{"prompt": self.prompt(r), "target": " " + r["answers"][0]} for r in rows if r["answers"]]
