"""SQuAD v1.1: `harness score squad` against the official evaluate-v1.1.py's printout, the task, and a tiny-model run.

Expected values: the official script (evaluate-v1.1.py, text from a copy in csarron/QAModels, run once in /tmp with
Python 3.11, not part of this repository) on ../shared/data/squad-v1.1/dev-v1.1.json (10,570 questions) with the
prediction files tests/squad_predictions.py builds: `python evaluate-v1.1.py dev-v1.1.json preds.json` printed
the JSON lines below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_main
from squad_predictions import gold_first, perturbed

from harness.errors import HarnessError
from harness.metrics.squad import evaluate, normalize_answer
from harness.results import read_results
from harness.task import TaskConfig
from tasks.squad import DEFAULT_PROMPT, SQuAD

OFFICIAL = {  # the official script's stdout, verbatim
    "gold": '{"exact_match": 100.0, "f1": 100.0}',
    "perturbed": '{"exact_match": 29.299905392620623, "f1": 46.414556494123374}',
    "empty": '{"exact_match": 0.0, "f1": 0.0}',
}




@pytest.fixture(scope="module")
def dev(shared_data: Path) -> Path:
    return shared_data / "squad-v1.1" / "dev-v1.1.json"


@pytest.mark.parametrize("name", ["gold", "perturbed", "empty"])
def test_score_squad_prints_what_the_official_script_prints(name: str, dev: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(dev.read_text())["data"]
    preds = {"gold": gold_first, "perturbed": perturbed, "empty": lambda d: {}}[name](data)
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(preds))
    code, out, err = run_main(monkeypatch, capsys, "score", "squad", "--data", str(dev), "--predictions", str(path))
    assert code == 0, err
    assert out.strip() == OFFICIAL[name]


def test_bad_predictions_are_one_line_errors(dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(dev.read_text())["data"]
    preds = gold_first(data)
    preds["not-a-real-id"] = "x"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(preds))
    code, out, err = run_main(monkeypatch, capsys, "score", "squad", "--data", str(dev), "--predictions", str(bad))
    # evaluate-v1.1.py ignores ids it does not know and scores the rest: the same scores, and a warning with the count
    assert code == 0 and json.loads(out) == {"exact_match": 100.0, "f1": 100.0}
    assert err.count("\n") == 1 and "1 prediction(s) for ids not in" in err and "'not-a-real-id'" in err
    bad.write_text("[1, 2]")
    code, _, err = run_main(monkeypatch, capsys, "score", "squad", "--data", str(dev), "--predictions", str(bad))
    assert code == 2 and "expected a JSON object" in err
    bad.write_text("{oops")
    code, _, err = run_main(monkeypatch, capsys, "score", "squad", "--data", str(dev), "--predictions", str(bad))
    assert code == 2 and "not valid JSON" in err
    with pytest.raises(HarnessError, match="is int, expected a string"):
        evaluate(data, {data[0]["paragraphs"][0]["qas"][0]["id"]: 3})


def test_normalization_is_the_official_one() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theater") == "theater"  # articles only as whole words


def test_task_docs_prompt_scoring_and_train_examples(dev: Path, tmp_path: Path) -> None:
    task = SQuAD(TaskConfig(data_dir=dev.parent.parent))  # DIR/squad-v1.1/dev-v1.1.json
    docs = task.docs()
    assert len(docs) == 10570 and len({d["id"] for d in docs}) == 10570
    d0 = docs[0]
    (req,) = task.requests(d0)
    assert req.prompt == DEFAULT_PROMPT.format(context=d0["context"], question=d0["question"])
    assert req.prompt.endswith("\nQuestion: Which NFL team represented the AFC at Super Bowl 50?\nAnswer:")
    rec = task.score(d0, [[" the Denver Broncos.\nQuestion: next"]])
    assert rec["extracted"] == "the Denver Broncos." and rec["metrics"] == {"exact_match": 100.0, "f1": 100.0}
    assert task.score(d0, [["Broncos"]])["metrics"]["f1"] == pytest.approx(100 * 2 / 3)
    # training: same prompt, the first answer span as target (train file in the official layout)
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "train-v1.1.json").write_text(json.dumps({"version": "1.1", "data": [
        {"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
            {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}))
    train = SQuAD(TaskConfig(data_dir=tmp_path)).train_examples("train")
    assert train == [{"prompt": "Context: Paris is in France.\nQuestion: Where is Paris?\nAnswer:", "target": " France"}]
    custom = SQuAD(TaskConfig(options={"data": str(dev), "prompt": "{context}\\nQ: {question}\\nA:"}))
    assert custom.requests(d0)[0].prompt == f"{d0['context']}\nQ: {d0['question']}\nA:"


def test_task_aggregate_equals_official_evaluate(dev: Path) -> None:
    task = SQuAD(TaskConfig(options={"data": str(dev)}))
    docs = task.docs()[:300]
    data = json.loads(dev.read_text())["data"]
    preds = perturbed(data)
    samples = [task.score(d, [[preds.get(d["id"], "")]]) for d in docs]
    agg = task.aggregate(samples)
    # the same 300 questions through the official-semantics evaluator ('' answers score like unanswered ones: 0)
    sub = [{"paragraphs": [{"qas": [{"id": d["id"], "answers": [{"text": t} for t in d["answers"]]} for d in docs]}]}]
    ref = evaluate(sub, {d["id"]: preds[d["id"]] for d in docs if d["id"] in preds})
    assert agg["exact_match"].value == ref["exact_match"] and agg["f1"].value == ref["f1"]
    assert agg["f1"].stderr is not None and agg["f1"].stderr > 0


def test_run_on_tiny_model(tiny_gpt2: Path, dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    code, stdout, err = run_main(monkeypatch, capsys, "run", "-m", str(tiny_gpt2), "-t", "squad", "--task-option",
                                f"data={dev}", "--limit", "2", "--max-new-tokens", "4", "-o", str(out),
                                "--run-name", "sq", "-q")
    assert code == 0, err
    task = read_results(out / "sq" / "results.json")["tasks"]["squad"]
    assert task["n"] == 2 and set(task["metrics"]) == {"exact_match", "f1"}
    samples = [json.loads(x) for x in (out / "sq" / "samples" / "squad.jsonl").read_text().splitlines()]
    assert [s["target"][0] for s in samples] == ["Denver Broncos", "Carolina Panthers"]
    assert all("\n" not in s["extracted"] for s in samples)
