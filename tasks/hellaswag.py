"""HellaSwag: commonsense sentence completion (Zellers et al., 2019), scored as lm-eval 0.4.13.

Data: hub `Rowan/hellaswag` (validation), or `--data-dir DIR` holding the official `hellaswag_val.jsonl`
(rows `{"ind", "activity_label", "ctx_a", "ctx_b", "endings", "label", ...}`) as `DIR/hellaswag/hellaswag_val.jsonl`
or `DIR/hellaswag/data/hellaswag_val.jsonl` (the layout of the rowanz/hellaswag repository).

Query `{activity_label}: {ctx_a} {ctx_b.capitalize()}` and each ending go through lm-eval's `preprocess`
(strip, ` [title]` -> `. `, bracketed WikiHow artefacts removed, double spaces collapsed); one
log-likelihood request per ending (` {ending}`); `acc` and `acc_norm` (per character) as lm-eval.
"""

from __future__ import annotations

import re
from typing import Any

from harness.data import Hub, require, rows_from
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task
from tasks.arc import multiple_choice_record

LOCAL = ("hellaswag/hellaswag_val.jsonl", "hellaswag/data/hellaswag_val.jsonl")


def preprocess(text: str) -> str:
    """lm-eval's hellaswag utils.preprocess, step for step."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


class HellaSwag(Task):
    name = "hellaswag"
    version = "1"
    output_type = "loglikelihood"
    metrics = ("acc", "acc_norm")
    data_source = "hub Rowan/hellaswag (validation); local DIR/hellaswag/hellaswag_val.jsonl (official layout)"

    def docs(self) -> list[Doc]:
        rows, where = rows_from(None, self.cfg.data_dir, LOCAL, Hub("Rowan/hellaswag", None, "validation"))
        self.source_description = where
        docs = []
        for i, r in enumerate(rows):
            at = f"{where} row {i + 1}"
            require(r, ("activity_label", "ctx_a", "ctx_b", "endings", "label"), at)
            try:
                gold = int(r["label"])
            except (TypeError, ValueError):
                raise HarnessError(f"{at}: label {r['label']!r} is not an ending index") from None
            if not 0 <= gold < len(r["endings"]):
                raise HarnessError(f"{at}: label {gold} is outside the {len(r['endings'])} endings")
            ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
            docs.append({"id": str(r.get("ind", i)), "query": preprocess(r["activity_label"] + ": " + ctx),
                         "choices": [preprocess(e) for e in r["endings"]], "gold": gold})
        if len({d["id"] for d in docs}) != len(docs):
            for i, d in enumerate(docs):
                d["id"] = str(i)
        return docs

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        return [LogLikelihood(doc["query"], f" {c}") for c in doc["choices"]]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        return multiple_choice_record(doc["query"], [f" {c}" for c in doc["choices"]], doc["choices"], doc["gold"], answers)
