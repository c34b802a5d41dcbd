"""ARC-Easy and ARC-Challenge: grade-school science multiple choice (Clark et al., 2018), scored as lm-eval 0.4.13.

Data: hub `allenai/ai2_arc` (configs ARC-Easy / ARC-Challenge, split test), or `--data-dir DIR` holding the
official files `ARC-Easy-Test.jsonl` / `ARC-Challenge-Test.jsonl` in `DIR/arc/`, `DIR/ARC-Easy/` (as in the
ARC-V1-Feb2018 zip) or `DIR/ARC-V1-Feb2018-2/ARC-Easy/`. Official rows nest the question
(`{"question": {"stem", "choices": [{"text", "label"}]}}`); hub rows are flat; both are read.

Prompt `Question: {question}\\nAnswer:`, one log-likelihood request per choice (` {choice}`); `acc` is the
argmax of the log-likelihoods, `acc_norm` the argmax of log-likelihood per character of the choice, as in
lm-eval's multiple_choice scoring. Each sample keeps every choice's log-likelihood so any report can be
recomputed from samples/*.jsonl.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.data import Hub, require, rows_from
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task


def multiple_choice_record(context: str | list[str], continuations: list[str], choices: list[str], gold: int,
                           answers: list[Answer], norm: bool = True) -> dict[str, Any]:
    """lm-eval 0.4's multiple_choice scoring: argmax of log-likelihoods, and per character of the choice (acc_norm).

    Shared by the ARC, HellaSwag and WinoGrande tasks. np.argmax keeps lm-eval's tie rule (the first choice).
    """
    lls = np.array([float(a[0]) for a in answers])
    lengths = np.array([float(len(c)) for c in choices])
    pred = int(np.argmax(lls))
    metrics = {"acc": float(pred == gold)}
    rec: dict[str, Any] = {"prompt": context, "continuations": continuations, "gold": gold,
                           "loglikelihoods": lls.tolist(), "is_greedy": [bool(a[1]) for a in answers], "pred": pred}
    if norm:
        rec["pred_norm"] = int(np.argmax(lls / lengths))
        metrics["acc_norm"] = float(rec["pred_norm"] == gold)
    rec["metrics"] = metrics
    return rec


def _flatten(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Official nested rows -> the hub's flat layout {id, question, choices: {text, label}, answerKey}."""
    require(row, ("question", "answerKey"), where)
    q = row["question"]
    if isinstance(q, dict):
        require(q, ("stem", "choices"), where)
        choices = {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]}
        q = q["stem"]
    else:
        require(row, ("choices",), where)
        choices = row["choices"]
    if row["answerKey"] not in choices["label"]:
        raise HarnessError(f"{where}: answerKey {row['answerKey']!r} is not one of the labels {choices['label']}")
    return {"id": str(row.get("id", "")), "question": q, "choices": choices, "answerKey": row["answerKey"]}


class _ARC(Task):
    version = "1"
    output_type = "loglikelihood"
    metrics = ("acc", "acc_norm")
    config: str  # ARC-Easy | ARC-Challenge

    def docs(self) -> list[Doc]:
        fname = f"{self.config}-Test.jsonl"
        layouts = (f"arc/{fname}", f"{self.config}/{fname}", f"ARC-V1-Feb2018-2/{self.config}/{fname}")
        rows, where = rows_from(None, self.cfg.data_dir, layouts, Hub("allenai/ai2_arc", self.config, "test"))
        self.source_description = where
        docs = [_flatten(r, f"{where} row {i + 1}") for i, r in enumerate(rows)]
        for i, d in enumerate(docs):
            d["id"] = d["id"] or str(i)
        if len({d["id"] for d in docs}) != len(docs):
            raise HarnessError(f"{where}: question ids are not unique")
        return docs

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        ctx = f"Question: {doc['question']}\nAnswer:"
        return [LogLikelihood(ctx, f" {c}") for c in doc["choices"]["text"]]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        choices = doc["choices"]["text"]
        gold = doc["choices"]["label"].index(doc["answerKey"])
        return multiple_choice_record(f"Question: {doc['question']}\nAnswer:", [f" {c}" for c in choices], choices,
                                      gold, answers)


class ARCEasy(_ARC):
    name = "arc_easy"
    config = "ARC-Easy"
    data_source = "hub allenai/ai2_arc (ARC-Easy, test); local DIR/arc/ARC-Easy-Test.jsonl"


class ARCChallenge(_ARC):
    name = "arc_challenge"
    config = "ARC-Challenge"
    data_source = "hub allenai/ai2_arc (ARC-Challenge, test); local DIR/arc/ARC-Challenge-Test.jsonl"
