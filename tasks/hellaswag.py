"""HellaSwag: commonsense sentence completion (Zellers et al., 2019), scored as lm-eval 0.4.13.

Data: hub `Rowan/hellaswag` (validation), or `--data-dir DIR` holding the official `hellaswag_val.jsonl`
(rows `{"ind", "activity_label", "ctx_a", "ctx_b", "endings", "label", ...}`) as `DIR/hellaswag/hellaswag_val.jsonl`
or `DIR/hellaswag/data/hellaswag_val.jsonl` (the layout of the rowanz/hellaswag repository).

Query `{activity_label}: {ctx_a} {ctx_b.capitalize()}` and each ending go through lm-eval's `preprocess`
(strip, ` [title]` -> `. `, bracketed WikiHow artefacts removed, double spaces collapsed); one
log-likelihood request per ending (` {ending}`); `acc` and `acc_norm` (per character) as lm-eval.
`--num-fewshot k`: k train rows (`hellaswag_train.jsonl` beside the validation file, or the hub's train split),
`{query} {gold ending}` each followed by a blank line, drawn as lm-eval draws them (tasks/_common.py).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from harness.data import Hub, require, rows_from
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo
from tasks._common import FEWSHOT_DELIMITER, FewShotTask, multiple_choice_record

LAYOUTS = {"validation": ("hellaswag/hellaswag_val.jsonl", "hellaswag/data/hellaswag_val.jsonl"),
           "train": ("hellaswag/hellaswag_train.jsonl", "hellaswag/data/hellaswag_train.jsonl")}
LOCAL = LAYOUTS["validation"]


def preprocess(text: str) -> str:
    """lm-eval's hellaswag utils.preprocess, step for step."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def _doc(r: dict[str, Any], i: int, at: str) -> Doc:
    """lm-eval's process_docs: the query and the endings preprocessed, the label as an ending index."""
    require(r, ("activity_label", "ctx_a", "ctx_b", "endings", "label"), at)
    try:
        gold = int(r["label"])
    except (TypeError, ValueError):
        raise HarnessError(f"{at}: label {r['label']!r} is not an ending index") from None
    if not 0 <= gold < len(r["endings"]):
        raise HarnessError(f"{at}: label {gold} is outside the {len(r['endings'])} endings")
    ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
    return {"id": str(r.get("ind", i)), "query": preprocess(r["activity_label"] + ": " + ctx),
            "choices": [preprocess(e) for e in r["endings"]], "gold": gold}


class HellaSwag(FewShotTask):
    name = "hellaswag"
    version = "1"
    output_type = "loglikelihood"
    metrics = ("acc", "acc_norm")
    data_source = ("hub Rowan/hellaswag (validation); local DIR/hellaswag/hellaswag_val.jsonl (official layout; "
                   "hellaswag_train.jsonl for few-shot)")

    def _rows(self, split: str) -> tuple[list[Doc], str]:
        rows, where = rows_from(None, self.cfg.data_dir, LAYOUTS[split], Hub("Rowan/hellaswag", None, split))
        return [_doc(r, i, f"{where} row {i + 1}") for i, r in enumerate(rows)], where

    def docs(self) -> list[Doc]:
        docs, where = self._rows("validation")
        self.source_description = where
        if len({d["id"] for d in docs}) != len(docs):
            for i, d in enumerate(docs):
                d["id"] = str(i)
        self.draw_fewshot(docs)
        return docs

    def fewshot_pool(self) -> tuple[list[Doc], str]:
        return self._rows("train")

    def fewshot_key(self, row: Doc) -> Hashable:
        return row["query"], tuple(row["choices"]), row["gold"]

    def context(self, doc: Doc) -> str:
        """lm-eval's: each exemplar `{query} {gold ending}` and a blank line, then the query."""
        head = "".join(f"{s['query']} {s['choices'][s['gold']]}{FEWSHOT_DELIMITER}" for s in self.shots(doc))
        return head + doc["query"]

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        ctx = self.context(doc)
        return [LogLikelihood(ctx, f" {c}") for c in doc["choices"]]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        return multiple_choice_record(self.context(doc), [f" {c}" for c in doc["choices"]], doc["choices"], doc["gold"],
                                      answers)
