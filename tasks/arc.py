"""ARC-Easy and ARC-Challenge: grade-school science multiple choice (Clark et al., 2018), scored as lm-eval 0.4.13.

Data: hub `allenai/ai2_arc` (configs ARC-Easy / ARC-Challenge, split test), or `--data-dir DIR` holding the
official files `ARC-Easy-Test.jsonl` / `ARC-Challenge-Test.jsonl` in `DIR/arc/`, `DIR/ARC-Easy/` (as in the
ARC-V1-Feb2018 zip) or `DIR/ARC-V1-Feb2018-2/ARC-Easy/`. Official rows nest the question
(`{"question": {"stem", "choices": [{"text", "label"}]}}`); hub rows are flat; both are read.

Prompt `Question: {question}\\nAnswer:`, one log-likelihood request per choice (` {choice}`); `acc` is the
argmax of the log-likelihoods, `acc_norm` the argmax of log-likelihood per character of the choice, as in
lm-eval's multiple_choice scoring. Each sample keeps every choice's log-likelihood so any report can be
recomputed from samples/*.jsonl.

`--num-fewshot k`: k exemplars from the train split (`ARC-Easy-Train.jsonl` beside the test file, or the hub's
train split) open the prompt, `Question: ...\nAnswer: {gold choice}` each followed by a blank line, drawn as
lm-eval draws them (tasks/_common.py), so the prompts equal lm-eval's for the same k and seed.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from harness.data import Hub, require, rows_from, typed
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo
from tasks._common import FEWSHOT_DELIMITER, FewShotTask, multiple_choice_record

__all__ = ["ARCChallenge", "ARCEasy", "multiple_choice_record"]


def _flatten(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Official nested rows -> the hub's flat layout {id, question, choices: {text, label}, answerKey}."""
    require(row, ("question", "answerKey"), where)
    q, stem = row["question"], "question"
    if isinstance(q, dict):
        require(q, ("stem", "choices"), where)
        listed = typed(q["choices"], list, "question.choices", where)
        if not all(isinstance(c, dict) and "text" in c and "label" in c for c in listed):
            raise HarnessError(f"{where}: question.choices must be a list of {{text, label}} objects")
        choices = {"text": [c["text"] for c in listed], "label": [c["label"] for c in listed]}
        q, stem = q["stem"], "question.stem"
    else:
        require(row, ("choices",), where)
        choices = typed(row["choices"], dict, "choices", where)
        for key in ("text", "label"):
            typed(choices.get(key), list, f"choices.{key}", where)
        if len(choices["text"]) != len(choices["label"]):
            raise HarnessError(f"{where}: choices.text and choices.label differ in length")
    typed(q, str, stem, where)
    for text in choices["text"]:
        typed(text, str, "a choice's text", where)
    if row["answerKey"] not in choices["label"]:
        raise HarnessError(f"{where}: answerKey {row['answerKey']!r} is not one of the labels {choices['label']}")
    return {"id": str(row.get("id", "")), "question": q, "choices": choices, "answerKey": row["answerKey"]}


class _ARC(FewShotTask):
    version = "1"
    output_type = "loglikelihood"
    metrics = ("acc", "acc_norm")
    config: str  # ARC-Easy | ARC-Challenge
    oversample = False  # lm-eval's ARC evaluates its test split and draws exemplars from train: k, not k + 1

    def _rows(self, split: str) -> tuple[list[Doc], str]:
        fname = f"{self.config}-{split.capitalize()}.jsonl"
        layouts = (f"arc/{fname}", f"{self.config}/{fname}", f"ARC-V1-Feb2018-2/{self.config}/{fname}")
        rows, where = rows_from(None, self.cfg.data_dir, layouts, Hub("allenai/ai2_arc", self.config, split))
        return [_flatten(r, f"{where} row {i + 1}") for i, r in enumerate(rows)], where

    def docs(self) -> list[Doc]:
        docs, where = self._rows("test")
        self.source_description = where
        for i, d in enumerate(docs):
            d["id"] = d["id"] or str(i)
        if len({d["id"] for d in docs}) != len(docs):
            raise HarnessError(f"{where}: question ids are not unique")
        self.draw_fewshot(docs)
        return docs

    def fewshot_pool(self) -> tuple[list[Doc], str]:
        return self._rows("train")

    def fewshot_key(self, row: Doc) -> Hashable:
        return row["question"], tuple(row["choices"]["text"]), row["answerKey"]

    def context(self, doc: Doc) -> str:
        """lm-eval's: each exemplar `Question: ...\nAnswer: {gold choice}` and a blank line, then the question."""
        head = "".join(f"Question: {s['question']}\nAnswer: {s['choices']['text'][_gold(s)]}{FEWSHOT_DELIMITER}"
                       for s in self.shots(doc))
        return f"{head}Question: {doc['question']}\nAnswer:"

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        ctx = self.context(doc)
        return [LogLikelihood(ctx, f" {c}") for c in doc["choices"]["text"]]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        choices = doc["choices"]["text"]
        return multiple_choice_record(self.context(doc), [f" {c}" for c in choices], choices, _gold(doc), answers)


def _gold(doc: Doc) -> int:
    return int(doc["choices"]["label"].index(doc["answerKey"]))


class ARCEasy(_ARC):
    name = "arc_easy"
    config = "ARC-Easy"
    data_source = "hub allenai/ai2_arc (ARC-Easy, test); local DIR/arc/ARC-Easy-Test.jsonl (-Train for few-shot)"


class ARCChallenge(_ARC):
    name = "arc_challenge"
    config = "ARC-Challenge"
    data_source = "hub allenai/ai2_arc (ARC-Challenge, test); local DIR/arc/ARC-Challenge-Test.jsonl (-Train for few-shot)"
