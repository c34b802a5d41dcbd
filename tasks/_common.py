"""What several tasks share: lm-eval 0.4.13's few-shot sampler and its multiple-choice scoring record.

Few-shot exemplars are drawn the way lm-eval's `ContextSampler` draws them, so a harness prompt equals
lm-eval's for the same k and seed: one `random.Random(seed)` per task, drawn from once per evaluated doc
in evaluation order, sampling from the train rows in file order. lm-eval has two rules and tasks pick one:
`oversample` (its rule when the few-shot split could hold the doc, as for HellaSwag and WinoGrande):
draw k + 1, drop the doc, keep the first k; otherwise (ARC) draw k. Either way, should a draw still hold the
evaluated row, or too few rows remain, k are drawn again from the rows without it, so a prompt never
shows the row being asked.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Hashable
from typing import Any, ClassVar

import numpy as np

from harness.errors import HarnessError
from harness.requests import Answer
from harness.task import Doc, ModelInfo, Task

FEWSHOT_DELIMITER = "\n\n"  # lm-eval's default fewshot_delimiter; its target_delimiter is " "


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


def draw(rnd: random.Random, keys: list[Hashable], k: int, doc_key: Hashable, oversample: bool) -> list[int]:
    """Indices of k pool rows for one doc, consuming `rnd` exactly as lm-eval's ContextSampler.sample does.

    `keys[i]` identifies pool row i; a row whose key equals `doc_key` is the evaluated row and never returned.
    Fewer than k come back only when the pool (without the doc) is smaller than k.
    """
    n = len(keys)
    res: list[int] = []
    if oversample and k + 1 <= n:
        res = [i for i in rnd.sample(range(n), k + 1) if keys[i] != doc_key][:k]
    elif not oversample and k <= n:
        res = rnd.sample(range(n), k)
        if any(keys[i] == doc_key for i in res):
            res = []
    if len(res) < k:
        rest = [i for i in range(n) if keys[i] != doc_key]
        res = rnd.sample(rest, min(k, len(rest)))
    return res


class FewShotTask(Task):
    """A task whose prompts may open with k solved train rows (`--num-fewshot k`, causal LMs only).

    Subclasses give `fewshot_pool` (the train rows, in the shape their docs have) and `fewshot_key` (what
    makes two rows the same question), and call `draw_fewshot(docs)` at the end of `docs()`; `shots(doc)`
    then gives each doc's exemplars. The pool is read in `docs()`, so a missing train split is an error
    before any model loads.
    """

    oversample: ClassVar[bool] = True  # lm-eval's k + 1 rule (see the module docstring); ARC sets False

    _shots: dict[str, list[Any]] | None = None
    _shots_used: int | None = None

    def fewshot_pool(self) -> tuple[list[Any], str]:
        """(train rows, where they came from)."""
        raise NotImplementedError

    def fewshot_key(self, row: Any) -> Hashable:
        """Equal for a pool row and a doc that ask the same thing (such a row is never an exemplar of that doc)."""
        raise NotImplementedError

    def supports_fewshot(self, model: ModelInfo) -> bool:
        return model.kind == "causal"

    def fewshot_used(self) -> int | dict[str, int]:
        return self.shots_used()

    def shots_used(self) -> int:
        """k, or fewer when the train split could not give k exemplars to every row."""
        return self.cfg.fewshot if self._shots_used is None else self._shots_used

    def draw_fewshot(self, docs: list[Doc]) -> None:
        """Draw every doc's exemplars, in the order of `docs` (lm-eval's order: --limit keeps a prefix)."""
        self._shots, self._shots_used = None, None
        k = self.cfg.fewshot
        if k <= 0:
            return
        try:
            pool, where = self.fewshot_pool()
        except HarnessError as e:
            raise HarnessError(f"--num-fewshot {k}: task {self.name} takes its exemplars from the train split: {e}") from None
        if not pool:
            raise HarnessError(f"--num-fewshot {k}: task {self.name}: {where} has no rows to take exemplars from")
        keys = [self.fewshot_key(r) for r in pool]
        rnd = random.Random(self.cfg.seed)
        self._shots = {}
        for d in docs:
            self._shots[d["id"]] = [pool[i] for i in draw(rnd, keys, k, self.fewshot_key(d), self.oversample)]
        self._shots_used = min((len(s) for s in self._shots.values()), default=k)
        if self._shots_used < k:
            print(f"warning: {self.name}: {where} holds only {self._shots_used} exemplars for some rows, "
                  f"fewer than --num-fewshot {k}", file=sys.stderr)
        self.source_description = f"{self.source_description}; few-shot: {where}"

    def shots(self, doc: Doc) -> list[Any]:
        """The exemplars of one doc (none when zero-shot)."""
        if self.cfg.fewshot <= 0:
            return []
        if self._shots is None:
            self.docs()
        assert self._shots is not None
        return self._shots[doc["id"]]
