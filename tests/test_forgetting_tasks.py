"""The forgetting suite's tasks: official local layouts, lm-eval's preprocessing, scoring records, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_tasks
from harness.task import TaskConfig


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.testing.suite import write_suite_data

    return write_suite_data(tmp_path_factory.mktemp("suite"), n=10)


def _task(name: str, data_dir: Path | None):  # noqa: ANN202
    [t] = make_tasks(name, TaskConfig(data_dir=data_dir))
    return t


def test_forgetting_group_is_the_four_tasks(suite: Path) -> None:
    tasks = make_tasks("forgetting", TaskConfig(data_dir=suite))
    assert [t.name for t in tasks] == ["hellaswag", "winogrande", "arc_challenge", "arc_easy"]
    assert all(len(t.docs()) == 10 for t in tasks)


def test_hellaswag_preprocess_is_lm_evals() -> None:
    from lm_eval.tasks.hellaswag.utils import preprocess as lm_preprocess

    from tasks.hellaswag import preprocess

    for text in ["  Home and Garden [title] How to paint a wall. [step] Buy paint.  ", "[header] A [title] B [step]  C",
                 "no brackets here", "double  space [x] and [title]end"]:
        assert preprocess(text) == lm_preprocess(text)


def test_hellaswag_query_and_errors(suite: Path, tmp_path: Path) -> None:
    t = _task("hellaswag", suite)
    docs = t.docs()
    row = json.loads((suite / "hellaswag" / "hellaswag_val.jsonl").read_text().splitlines()[1])
    assert docs[1]["query"] == f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}"
    assert docs[1]["id"] == str(row["ind"]) and docs[1]["gold"] == row["label"]
    assert [r.continuation for r in t.requests(docs[1])] == [" " + e for e in docs[1]["choices"]]
    bad = tmp_path / "hellaswag"
    bad.mkdir()
    (bad / "hellaswag_val.jsonl").write_text(json.dumps({**row, "label": 7}) + "\n")
    with pytest.raises(HarnessError, match=r"hellaswag_val.jsonl row 1: label 7 is outside the 4 endings"):
        _task("hellaswag", tmp_path).docs()


def test_winogrande_labels_file_and_partial_scoring(suite: Path, tmp_path: Path) -> None:
    t = _task("winogrande", suite)
    docs = t.docs()
    labels = (suite / "winogrande" / "dev-labels.lst").read_text().split()
    assert [d["answer"] for d in docs] == labels
    d = docs[0]
    reqs = t.requests(d)
    blank = d["sentence"].index("_")
    assert [r.context for r in reqs] == [d["sentence"][:blank] + d["option1"], d["sentence"][:blank] + d["option2"]]
    assert reqs[0].continuation == reqs[1].continuation == " " + d["sentence"][blank + 1:].strip()
    rec = t.score(d, [(-3.0, False), (-2.0, True)])
    assert rec["pred"] == 1 and rec["metrics"] == {"acc": float(d["answer"] == "2")}
    (tmp_path / "winogrande").mkdir()
    (tmp_path / "winogrande" / "dev.jsonl").write_text((suite / "winogrande" / "dev.jsonl").read_text())
    (tmp_path / "winogrande" / "dev-labels.lst").write_text("1\n2\n")
    with pytest.raises(HarnessError, match=r"dev-labels.lst: 2 labels for 10 rows in dev.jsonl"):
        _task("winogrande", tmp_path).docs()


def test_arc_official_rows_numeric_labels_and_acc_norm_by_characters(suite: Path, tmp_path: Path) -> None:
    t = _task("arc_easy", suite)
    docs = t.docs()
    d = docs[0]  # the writer gives row 0 numeric labels 1-4, as some real ARC rows have
    assert d["choices"]["label"] == ["1", "2", "3", "4"]
    assert t.requests(d)[0].context == f"Question: {d['question']}\nAnswer:"
    gold = d["choices"]["label"].index(d["answerKey"])
    lens = [len(c) for c in d["choices"]["text"]]
    # log-likelihood proportional to length: acc picks the shortest choice, acc_norm sees a tie and takes the first
    answers = [(-1.0 * n, False) for n in lens]
    rec = t.score(d, answers)
    assert rec["pred"] == lens.index(min(lens)) and rec["pred_norm"] == 0
    assert rec["metrics"] == {"acc": float(rec["pred"] == gold), "acc_norm": float(gold == 0)}
    rows = (suite / "arc" / "ARC-Easy-Test.jsonl").read_text().splitlines()
    bad = json.loads(rows[1]) | {"answerKey": "E"}
    (tmp_path / "arc").mkdir()
    (tmp_path / "arc" / "ARC-Easy-Test.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(HarnessError, match=r"ARC-Easy-Test.jsonl row 1: answerKey 'E' is not one of the labels"):
        _task("arc_easy", tmp_path).docs()


def test_missing_local_file_offline_is_one_line(tmp_path: Path) -> None:
    for name, layout in (("arc_challenge", "arc/ARC-Challenge-Test.jsonl"), ("winogrande", "winogrande/dev.jsonl"),
                         ("hellaswag", "hellaswag/hellaswag_val.jsonl")):
        with pytest.raises(HarnessError) as e:
            _task(name, tmp_path).docs()
        assert str(e.value).startswith(f"--data-dir {tmp_path}: no {layout} or ") and "\n" not in str(e.value)


def test_real_official_files(shared_data: Path) -> None:
    arc = _task("arc_challenge", shared_data).docs()
    key = [json.loads(x) for x in (shared_data / "arc" / "aristo-leaderboard" /
                                   "arc-challenge-test-question-answers.jsonl").read_text().splitlines()]
    assert len(arc) == 1172 and {d["id"]: d["answerKey"] for d in arc} == {k["id"]: k["answerKey"] for k in key}
    wino = _task("winogrande", shared_data).docs()
    labels = (shared_data / "winogrande" / "dev-labels.lst").read_text().split()
    assert len(wino) == 1267 and [d["answer"] for d in wino] == labels
    assert len(_task("arc_easy", shared_data).docs()) == 2376
