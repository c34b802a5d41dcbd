"""GSM8K answer extraction and the pass@k estimator."""

from __future__ import annotations

import itertools
import json
from math import comb
from pathlib import Path

import pytest

from harness.metrics.stats import mean_stderr, pass_at_k
from harness.metrics.text import extract, gold_answer, normalize_number


def test_gold_extraction_on_all_1319_test_rows(shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 1319
    golds = [gold_answer(r["answer"]) for r in rows]
    assert all(g is not None for g in golds)
    # The gold is the text after '####' with commas removed: check it against an independent parse.
    for r, g in zip(rows, golds):
        raw = r["answer"].split("####")[-1].strip().replace(",", "")
        assert float(raw) == float(g)
    # strict extraction of the gold solution text itself finds the same number
    assert all(extract(r["answer"], "strict") == g for r, g in zip(rows, golds))


@pytest.mark.parametrize(
    ("text", "how", "expected"),
    [
        ("so she has 9 eggs.\n#### 18", "strict", "18"),
        ("#### $1,234.00", "strict", "1234"),
        ("#### -3", "strict", "-3"),
        ("no marker here 42", "strict", None),
        ("Thus, the answer is 72.", "answer_is", "72"),
        ("The final answer is $5,000", "answer_is", "5000"),
        ("The answer is: 0.50", "answer_is", "0.5"),
        ("Short answer: 18.00", "short_answer", "18"),
        ("short answer: 7", "short_answer", "7"),
        ("I think 3 apples plus 4 gives 7.", "flexible", "7"),
        ("It costs $1,234.50.", "flexible", "1234.5"),
        ("nothing numeric", "flexible", None),
    ],
)
def test_extractors(text: str, how: str, expected: str | None) -> None:
    assert extract(text, how) == expected


def test_numeric_equality_normalisation() -> None:
    assert normalize_number("18.00") == normalize_number("18") == "18"
    assert normalize_number("$1,000.") == "1000"
    assert normalize_number("0.250") == "0.25"
    assert normalize_number("abc") is None


def test_pass_at_k_matches_brute_force() -> None:
    for n in range(1, 7):
        for c in range(0, n + 1):
            for k in range(1, n + 1):
                outcomes = [1] * c + [0] * (n - c)
                subsets = list(itertools.combinations(outcomes, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(brute)
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_mean_stderr_closed_form() -> None:
    m = mean_stderr([1, 0, 1, 1])
    assert m.value == 0.75
    assert m.stderr == pytest.approx((0.25 / 4) ** 0.5)  # sample var 0.25 (ddof=1), n = 4
