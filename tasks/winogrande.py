"""WinoGrande: pronoun resolution at scale (Sakaguchi et al., 2019), scored as lm-eval 0.4.13 (partial scoring).

Data: hub `allenai/winogrande` (config winogrande_xl, validation = the dev set), or `--data-dir DIR` holding the
official `dev.jsonl` in `DIR/winogrande/` or `DIR/winogrande_1.1/`; when its rows carry no `answer`, the
official `dev-labels.lst` beside it (one `1`/`2` per line) supplies the labels.

Partial scoring (Trinh & Le, 2018, as lm-eval): each option fills the blank to make one context,
`sentence[:blank] + option`, and the shared rest of the sentence (` {sentence after the blank}`) is
the continuation scored under each context; the option whose context makes it likelier wins (`acc`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.data import Hub, require, rows_from
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task
from tasks.arc import multiple_choice_record

LOCAL = ("winogrande/dev.jsonl", "winogrande_1.1/dev.jsonl")


def contexts(doc: Doc) -> list[str]:
    idx = doc["sentence"].index("_")
    return [doc["sentence"][:idx] + opt for opt in (doc["option1"], doc["option2"])]


def continuation(doc: Doc) -> str:
    idx = doc["sentence"].index("_") + 1
    return " " + doc["sentence"][idx:].strip()


def _labels(path: Path, n: int) -> list[str] | None:
    lst = path.with_name(path.stem + "-labels.lst")
    if not lst.exists():
        return None
    labels = [x.strip() for x in lst.read_text().splitlines() if x.strip()]
    if len(labels) != n:
        raise HarnessError(f"{lst}: {len(labels)} labels for {n} rows in {path.name}")
    return labels


class WinoGrande(Task):
    name = "winogrande"
    version = "1"
    output_type = "loglikelihood"
    metrics = ("acc",)
    data_source = "hub allenai/winogrande (winogrande_xl, validation); local DIR/winogrande/dev.jsonl (+ dev-labels.lst)"

    def docs(self) -> list[Doc]:
        rows, where = rows_from(None, self.cfg.data_dir, LOCAL, Hub("allenai/winogrande", "winogrande_xl", "validation"))
        if not where.startswith("hub:"):
            labels = _labels(Path(where), len(rows))
            if labels is not None:
                rows = [{**r, "answer": r.get("answer") or lab} for r, lab in zip(rows, labels)]
        self.source_description = where
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
        if len({d["id"] for d in docs}) != len(docs):
            for i, d in enumerate(docs):
                d["id"] = str(i)
        return docs

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        cont = continuation(doc)
        return [LogLikelihood(ctx, cont) for ctx in contexts(doc)]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        ctxs = contexts(doc)
        return multiple_choice_record(ctxs, [continuation(doc)] * 2, ctxs, int(doc["answer"]) - 1, answers, norm=False)
