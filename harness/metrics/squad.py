"""SQuAD v1.1 exact match and F1, exactly as the official `evaluate-v1.1.py` computes them.

normalize_answer lowercases, drops ASCII punctuation, the articles a/an/the and extra whitespace; F1 is token overlap;
each question takes the max over its gold answers; totals are x100 over all questions (unanswered count 0). Sums run
in dataset order with the same operations, so the floats are identical to the official script's, not just close.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from harness.errors import HarnessError

_EXCLUDE = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official order of steps)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _EXCLUDE)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    num_same = sum((Counter(pred) & Counter(gold)).values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred)
    recall = 1.0 * num_same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def max_over_ground_truths(metric_fn: Any, prediction: str, ground_truths: Iterable[str]) -> Any:
    return max(metric_fn(prediction, g) for g in ground_truths)


def squad_questions(dataset: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """The `qas` entries of an official-format `data` list, in file order."""
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def evaluate(dataset: list[dict[str, Any]], predictions: Mapping[str, str], where: str = "predictions") -> dict[str, float]:
    """{"exact_match", "f1"} over every question of `dataset` (official `data` list); unanswered questions score 0.

    Predictions for ids the dataset does not have are an error here (the official script ignores them silently,
    which hides id mix-ups); non-string predictions are an error too.
    """
    ids = set()
    f1 = exact_match = total = 0
    for qa in squad_questions(dataset):
        ids.add(qa["id"])
        total += 1
        if qa["id"] not in predictions:
            continue
        prediction = predictions[qa["id"]]
        if not isinstance(prediction, str):
            raise HarnessError(f"{where}: prediction for id {qa['id']} is {type(prediction).__name__}, expected a string")
        golds = [a["text"] for a in qa["answers"]]
        exact_match += max_over_ground_truths(exact_match_score, prediction, golds)
        f1 += max_over_ground_truths(f1_score, prediction, golds)
    unknown = [k for k in predictions if k not in ids]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise HarnessError(f"{where}: prediction for unknown question id {unknown[0]!r}{more} (not in the dataset)")
    if total == 0:
        raise HarnessError(f"{where}: the dataset has no questions")
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
