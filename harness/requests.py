"""The typed requests a task asks of a model, and the answers models give.

Tasks never touch models and models never see tasks: this module is the whole interface.
Each request is a frozen dataclass with a stable `key()` so the runner can dedupe requests
and the store can look answers up across runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Union


def _key(kind: str, fields: dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, **fields}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Generate:
    """Continue `prompt` (a string, or chat messages as ((role, content), ...)).

    Greedy when temperature == 0 and num_beams == 1. `n` samples are drawn for pass@k;
    sampling is seeded by `seed` so a resumed run reproduces the same samples.
    The answer is a list of `n` strings, already cut at the first stop sequence.
    """

    prompt: str | tuple[tuple[str, str], ...]
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    kind: str = field(default="generate", init=False)

    def key(self) -> str:
        return _key(self.kind, asdict(self))

    def length(self) -> int:
        return len(self.prompt) if isinstance(self.prompt, str) else sum(len(c) for _, c in self.prompt)


@dataclass(frozen=True)
class LogLikelihood:
    """log P(continuation | context). The answer is (logprob, is_greedy).

    is_greedy is True when every continuation token is the argmax of the model's distribution
    (lm-eval's `acc` for greedy-match tasks).
    """

    context: str
    continuation: str
    kind: str = field(default="loglikelihood", init=False)

    def key(self) -> str:
        return _key(self.kind, asdict(self))

    def length(self) -> int:
        return len(self.context) + len(self.continuation)


@dataclass(frozen=True)
class Classify:
    """Score `inputs` with a classifier. The answer is the list of logits (one float for regression).

    `inputs` is a text, a (text, text) pair, or a path to an image file. `labels` optionally names the classes in
    the order the task scores them: a model whose id2label names them all answers in that order, so a checkpoint
    with another label order (an ImageNet-style CIFAR head, say) is still scored right.
    """

    inputs: tuple[str, ...]
    labels: tuple[str, ...] = ()
    kind: str = field(default="classify", init=False)

    def key(self) -> str:
        return _key(self.kind, asdict(self))

    def length(self) -> int:
        return sum(len(x) for x in self.inputs)


Request = Union[Generate, LogLikelihood, Classify]
Answer = Any  # list[str] | tuple[float, bool] | list[float], per request kind


def answer_to_json(answer: Answer) -> Any:
    """Answers are stored as JSON; tuples become lists."""
    return list(answer) if isinstance(answer, tuple) else answer


def answer_from_json(kind: str, value: Any) -> Answer:
    if kind == "loglikelihood":
        return (float(value[0]), bool(value[1]))
    return value


def logits_in_label_order(logits: list[float], id2label: dict[Any, str] | None, labels: tuple[str, ...]) -> list[float]:
    """`logits` reordered to `labels` when the model's id2label names every one of them (case-insensitively)."""
    if not labels or not id2label or len(logits) != len(id2label):
        return logits
    index = {str(name).lower(): int(i) for i, name in id2label.items()}
    if not all(name.lower() in index for name in labels):
        return logits
    return [logits[index[name.lower()]] for name in labels]
