"""WinoGrande: pronoun resolution at scale (Sakaguchi et al., 2019), scored as lm-eval 0.4.13 (partial scoring).

Data: hub `allenai/winogrande` (config winogrande_xl, validation = the dev set), or `--data-dir DIR` holding the
official `dev.jsonl` in `DIR/winogrande/` or `DIR/winogrande_1.1/`; when its rows carry no `answer`, the
official `dev-labels.lst` beside it (one `1`/`2` per line) supplies the labels.

Partial scoring (Trinh & Le, 2018, as lm-eval): each option fills the blank to make one context,
`sentence[:blank] + option`, and the shared rest of the sentence (` {sentence after the blank}`) is
the continuation scored under each context; the option whose context makes it likelier wins (`acc`).
`--num-fewshot k`: k rows of the train split (`train_xl.jsonl` beside dev.jsonl, with its `train_xl-labels.lst`
if the rows lack answers, or the hub's winogrande_xl train), each its sentence with the right option in the blank
and a blank line, go before each option's context; drawn as lm-eval draws them (tasks/_common.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

from harness.data import Hub, require, rows_from
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo
from tasks._common import FEWSHOT_DELIMITER, FewShotTask, multiple_choice_record

LAYOUTS = {"validation": ("winogrande/dev.jsonl", "winogrande_1.1/dev.jsonl"),
           "train": ("winogrande/train_xl.jsonl", "winogrande_1.1/train_xl.jsonl")}  # lm-eval: winogrande_xl's train
LOCAL = LAYOUTS["validation"]


def contexts(doc: Doc) -> list[str]:
    idx = doc["sentence"].index("_")
    return [doc["sentence"][:idx] + opt for opt in (doc["option1"], doc["option2"])]


def continuation(doc: Doc) -> str:
    idx = doc["sentence"].index("_") + 1
    return " " + doc["sentence"][idx:].strip()


def exemplar(doc: Doc) -> str:
    """lm-eval's few-shot turn: the blank filled with the right option, ` {rest}` and a blank line.

    As lm-eval, a sentence whose blank ends it (empty rest) is its filled-in context alone, with no delimiter.
    """
    filled = contexts(doc)[int(doc["answer"]) - 1]
    rest = continuation(doc)[1:]
    return f"{filled} {rest}{FEWSHOT_DELIMITER}" if rest else filled


def _labels(path: Path, n: int) -> list[str] | None:
    lst = path.with_name(path.stem + "-labels.lst")
    if not lst.exists():
        return None
    labels = [x.strip() for x in lst.read_text().splitlines() if x.strip()]
    if len(labels) != n:
        raise HarnessError(f"{lst}: {len(labels)} labels for {n} rows in {path.name}")
    return labels


class WinoGrande(FewShotTask):
    name = "winogrande"
    version = "1"
    output_type = "loglikelihood"
    metrics = ("acc",)
    data_source = ("hub allenai/winogrande (winogrande_xl, validation); local DIR/winogrande/dev.jsonl (+ dev-labels.lst; "
                   "train_xl.jsonl for few-shot)")

    def _rows(self, split: str) -> tuple[list[Doc], str]:
        rows, where = rows_from(None, self.cfg.data_dir, LAYOUTS[split],
                                Hub("allenai/winogrande", "winogrande_xl", split))
        if not where.startswith("hub:"):
            labels = _labels(Path(where), len(rows))
            if labels is not None:
                rows = [{**r, "answer": r.get("answer") or lab} for r, lab in zip(rows, labels)]
        docs = []
        for i, r in enumerate(rows):
            at = f"{where} row {i + 1}"
            require(r, ("sentence", "option1", "option2", "answer"), at)
            if "_" not in r["sentence"]:
                raise HarnessError(f"{at}: sentence has no '_' blank")
            if str(r["answer"]) not in ("1", "2"):
                raise HarnessError(f"{at}: answer {r['answer']!r} is not 1 or 2")
            docs.append({"id": str(r.get("qID") or i), "sentence": r["sentence"], "option1": r["option1"],
                         "option2": r["option2"], "answer": str(r["answer"])})
        return docs, where

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
        return row["sentence"], row["option1"], row["option2"], row["answer"]

    def contexts(self, doc: Doc) -> list[str]:
        """Each option's context; in few-shot the exemplars come before each (as lm-eval's multiple-input prompts)."""
        head = "".join(exemplar(s) for s in self.shots(doc))
        return [head + c for c in contexts(doc)]

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        cont = continuation(doc)
        return [LogLikelihood(ctx, cont) for ctx in self.contexts(doc)]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        ctxs = self.contexts(doc)
        return multiple_choice_record(ctxs, [continuation(doc)] * 2, contexts(doc), int(doc["answer"]) - 1, answers,
                                      norm=False)
