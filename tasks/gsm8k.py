"""GSM8K: grade-school math word problems, Pass@1 with answer extraction (Cobbe et al., 2021).

Data: hub `openai/gsm8k` (config `main`), or `--data-dir DIR` holding `gsm8k/test.jsonl` and
`gsm8k/train.jsonl` (the official grade-school-math layout). Prompt: `Question: ...\\nAnswer:`,
zero- or k-shot with exemplars drawn from the train split by a fixed seed, or as chat messages
with --chat-template. Four extractors are each their own metric: strict (`#### N`),
`The answer is N`, `Short answer: N` and flexible (the last number). With --samples n, also
pass@k (unbiased estimator) for k = 1, 2, 4, ... <= n and maj@n, by the `primary` extractor.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from harness.data import Hub, require, rows_from, typed
from harness.errors import HarnessError
from harness.metrics.stats import pass_at_k
from harness.metrics.text import extract, gold_answer
from harness.requests import Answer, Request
from harness.task import CAUSAL, Doc, ModelInfo, Task, generate_request

EXTRACTORS = ("strict", "answer_is", "short_answer", "flexible")
STOP = ("\n\nQuestion:", "Question:", "</s>", "<|im_end|>", "<|eot_id|>")
INSTRUCTION = "Solve the math problem step by step. End your answer with '#### <number>'."


class GSM8K(Task):
    name = "gsm8k"
    version = "1"
    output_type = "generate"
    metrics = tuple(f"pass@1_{e}" for e in EXTRACTORS)
    data_source = "hub openai/gsm8k (main, test); local DIR/gsm8k/test.jsonl, train.jsonl for few-shot"
    sampling = True
    option_keys = {"primary": "extractor for pass@k and maj@n with --samples (default flexible)"}

    def _rows(self, split: str) -> list[dict[str, Any]]:
        layouts = (f"gsm8k/{split}.jsonl", f"grade_school_math/data/{split}.jsonl")
        rows, where = rows_from(None, self.cfg.data_dir, layouts, Hub("openai/gsm8k", "main", split))
        if split == "test":
            self.source_description = where
        for i, r in enumerate(rows):
            require(r, ("question", "answer"), f"{where} row {i + 1}")
            typed(r["question"], str, "question", f"{where} row {i + 1}")
            if gold_answer(typed(r["answer"], str, "answer", f"{where} row {i + 1}")) is None:
                raise HarnessError(f"{where} row {i + 1}: answer has no '#### <number>' line")
        return rows

    def docs(self) -> list[Doc]:
        return [{"id": str(i), "question": r["question"], "answer": r["answer"]} for i, r in enumerate(self._rows("test"))]

    def _fewshot(self, doc: Doc) -> list[dict[str, Any]]:
        k = self.cfg.fewshot
        if k <= 0:
            return []
        if not hasattr(self, "_train"):
            self._train = self._rows("train")
        rng = random.Random(f"{self.cfg.seed}-{doc['id']}")
        pool = [r for r in self._train if r["question"] != doc["question"]]
        return rng.sample(pool, min(k, len(pool)))

    def prompt(self, doc: Doc) -> str | tuple[tuple[str, str], ...]:
        shots = self._fewshot(doc)
        if self.cfg.chat_template:
            msgs: list[tuple[str, str]] = []
            for s in shots:
                msgs += [("user", f"{INSTRUCTION}\n\n{s['question']}"), ("assistant", s["answer"])]
            msgs.append(("user", f"{INSTRUCTION}\n\n{doc['question']}"))
            return tuple(msgs)
        head = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
        return f"{head}Question: {doc['question']}\nAnswer:"

    def check(self) -> None:
        primary = self.option("primary", "flexible")
        if primary not in EXTRACTORS:
            raise HarnessError(f"--task-option primary={primary}: use one of {', '.join(EXTRACTORS)}")

    def supports_fewshot(self, model: ModelInfo) -> bool:
        return model.kind == "causal"

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        return [generate_request(self.cfg, self.prompt(doc), STOP, max_new_tokens=256)]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        outputs: list[str] = answers[0]
        target = gold_answer(doc["answer"])
        extracted = {e: [extract(o, e) for o in outputs] for e in EXTRACTORS}
        n = len(outputs)
        metrics: dict[str, float] = {}
        for e in EXTRACTORS:
            metrics[f"pass@1_{e}"] = sum(x == target for x in extracted[e]) / n
        if n > 1:
            primary = self.option("primary", "flexible") or "flexible"
            ex = extracted[primary]
            c = sum(x == target for x in ex)
            k = 2
            while k <= n:
                metrics[f"pass@{k}_{primary}"] = pass_at_k(n, c, k)
                k *= 2
            votes = Counter(x for x in ex if x is not None)
            metrics[f"maj@{n}_{primary}"] = float(bool(votes) and votes.most_common(1)[0][0] == target)
        prompt = self.prompt(doc)
        return {
            "prompt": prompt if isinstance(prompt, str) else [list(m) for m in prompt],
            "output": outputs[0] if n == 1 else outputs,
            "extracted": {e: v[0] if n == 1 else v for e, v in extracted.items()},
            "target": target,
            "metrics": metrics,
        }

    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        """Prompt as in evaluation (zero-shot); target is the worked solution ending in `#### N`."""
        rows = self._rows(split)
        saved, self.cfg.num_fewshot = self.cfg.num_fewshot, 0
        try:
            return [{"prompt": self.prompt({"id": str(i), **r}), "target": " " + r["answer"]} for i, r in enumerate(rows)]
        finally:
            self.cfg.num_fewshot = saved
