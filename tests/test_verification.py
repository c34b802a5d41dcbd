"""math_verify: verdict parsing, the project's own competition-layout data, LL / generate / classifier modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from harness.errors import HarnessError
from harness.evaluate import RunSpec, run
from harness.models.loading import ModelSpec
from harness.results import read_results
from harness.task import ModelInfo, TaskConfig
from harness.testing.verification import write_verification_data
from tasks.verification import VALIDATION_ROWS, MathVerify, parse_verdict


@pytest.mark.parametrize("text, verdict", [
    ("True", True), (" false", False), ("TRUE.", True), ("False, because step 2 is wrong", False),
    ("Final Output (True/False): True", True), ("Checking... calculations fine.\nFinal Output (True/False): **False**", False),
    ("The provided answer is true.", True), ("Final answer: false", False),
    ("It is not clear", None), ("", None), ("untrue falsehood", None),
    ("Step 1 is true but the final output is wrong.\nFinal Output (True/False): False", False),
])
def test_parse_verdict(text: str, verdict: bool | None) -> None:
    assert parse_verdict(text) is verdict


@pytest.fixture(scope="module")
def verify_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_verification_data(tmp_path_factory.mktemp("mv"), n_train=60, n_validation=24, n_test=10)


def _task(data_dir: Path | None = None, **options: str) -> MathVerify:
    return MathVerify(TaskConfig(data_dir=data_dir, options=options))


def test_own_data_in_every_format(tmp_path: Path) -> None:
    docs = {}
    for fmt in ("jsonl", "csv", "parquet"):
        root = write_verification_data(tmp_path / fmt, n_train=10, n_validation=12, n_test=4, fmt=fmt)
        docs[fmt] = _task(root).docs()
    assert docs["jsonl"] == docs["csv"] == docs["parquet"]
    rows = docs["jsonl"]
    assert len(rows) == 12 and {r["label"] for r in rows} == {0, 1}
    for r in rows:  # a wrong row's solution ends in the wrong provided answer, a right one's in the right answer
        assert r["answer"] in r["solution"]
    prompt = _task(tmp_path / "jsonl").prompt(rows[0])
    for part in ("Question:", rows[0]["question"], "Provided answer:", "Solution:", "Calculations", "Logic",
                 "Consistency", "Final Output (True/False):"):
        assert part in prompt


def test_validation_split_falls_back_to_the_tail_of_train(tmp_path: Path) -> None:
    root = write_verification_data(tmp_path, n_train=VALIDATION_ROWS + 30, n_validation=0, n_test=0)
    (root / "math_verify" / "validation.jsonl").unlink()
    val = _task(root).docs()
    train = _task(root).train_examples("train")
    assert len(val) == VALIDATION_ROWS and len(train) == 30
    assert {t["prompt"] for t in train}.isdisjoint({_task(root).prompt(v) for v in val})
    assert {t["target"] for t in train} <= {" True", " False"}


def test_malformed_rows_and_template_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "1", "is_correct": True}) + "\n")
    with pytest.raises(HarnessError, match=rf"{bad} row 1: missing column solution"):
        _task(file=str(bad)).docs()
    bad.write_text(json.dumps({"question": "q", "answer": "1", "solution": "s", "is_correct": "maybe"}) + "\n")
    with pytest.raises(HarnessError, match=rf"{bad} row 1: is_correct 'maybe' is not True/False"):
        _task(file=str(bad)).docs()
    tpl = tmp_path / "t.txt"
    tpl.write_text("Is $\\frac{a}{b}$ right? {solution}\n")
    with pytest.raises(HarnessError, match=rf"{tpl}: prompt template lacks {{question}}"):
        _task(prompt_template=str(tpl)).prompt({"question": "q", "answer": "a", "solution": "s"})
    tpl.write_text("Q: {question} A: {answer} S: {solution} \\boxed{x}\nVerdict:")
    assert _task(prompt_template=str(tpl)).prompt({"question": "q", "answer": "a", "solution": "s"}) == \
        "Q: q A: a S: s \\boxed{x}\nVerdict:"
    with pytest.raises(HarnessError, match="mode=vote"):
        _task(mode="vote").requests({"question": "q", "answer": "a", "solution": "s"})


def _run(model: Path, data: Path, out: Path, name: str, **options: str) -> tuple[dict, list[dict]]:
    spec = RunSpec(model=ModelSpec(model=str(model), batch_size=8), tasks=["math_verify"],
                   task_cfg=TaskConfig(data_dir=data, options=options,
                                         max_new_tokens=6 if options.get("mode") == "generate" else None), output_dir=out,
                   run_name=name, quiet=True)
    [path] = run(spec)
    samples = [json.loads(x) for x in (path.parent / "samples" / "math_verify.jsonl").read_text().splitlines()]
    return read_results(path)["tasks"]["math_verify"], samples


def test_loglikelihood_mode_metrics_match_sklearn(tiny_gpt2: Path, verify_data: Path, tmp_path: Path) -> None:
    entry, samples = _run(tiny_gpt2, verify_data, tmp_path, "ll")
    assert entry["output_type"] == "loglikelihood" and len(samples) == 24
    gold = [int(s["label"]) for s in samples]
    pred = [int(s["loglikelihoods"][" True"] > s["loglikelihoods"][" False"]) for s in samples]
    assert [int(s["pred"]) for s in samples] == pred
    m = entry["metrics"]
    assert m["acc"]["value"] == pytest.approx(sum(g == p for g, p in zip(gold, pred)) / len(gold))
    prec, rec, f1, _ = precision_recall_fscore_support(gold, pred, labels=[1, 0], zero_division=0)
    for i, name in enumerate(("true", "false")):
        assert m[f"precision_{name}"]["value"] == pytest.approx(prec[i])
        assert m[f"recall_{name}"]["value"] == pytest.approx(rec[i])
        assert m[f"f1_{name}"]["value"] == pytest.approx(f1[i])
    assert entry["details"]["confusion_matrix"]["matrix"] == confusion_matrix(gold, pred, labels=[0, 1]).tolist()
    assert "warning" not in entry["details"]
    from harness.leaderboard import render

    assert "math_verify/acc (%)" in render(tmp_path) and "math_verify/f1_false (%)" in render(tmp_path)


def test_generate_mode_counts_unparseable_as_wrong(tiny_gpt2: Path, verify_data: Path, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    entry, samples = _run(tiny_gpt2, verify_data, tmp_path, "gen", mode="generate", split="test")
    assert entry["output_type"] == "generate"
    parsed = [parse_verdict(s["output"]) for s in samples]
    assert [s["pred"] for s in samples] == parsed
    n_bad = sum(p is None for p in parsed)
    m = entry["metrics"]
    assert entry["details"]["unparseable_count"] == n_bad
    assert m["unparseable"]["value"] == pytest.approx(n_bad / len(samples))
    right = sum(p is not None and int(p) == int(s["label"]) for p, s in zip(parsed, samples))
    assert m["acc"]["value"] == pytest.approx(right / len(samples))
    # the test split carries the competition's placeholder labels (all False): a warning says so
    assert "every gold label is 0" in capfd.readouterr().err
    assert "accuracy means nothing" in entry["details"]["warning"]


def test_unparseable_is_wrong_for_either_label() -> None:
    task = _task()
    doc = {"question": "q", "answer": "a", "solution": "s"}
    for label in (0, 1):
        rec = MathVerify(TaskConfig(options={"mode": "generate"})).score(
            {**doc, "label": label}, [["I am not sure."]])
        assert rec["metrics"] == {"acc": 0.0, "unparseable": 1.0}
    assert task.score({**doc, "label": 1}, [(-1.0, False), (-0.5, True)])["metrics"]["acc"] == 1.0


def test_classifier_mode_and_chat_prompt(tiny_gpt2: Path, verify_data: Path, tmp_path: Path) -> None:
    """A sequence classifier gets (question + answer, solution) pairs; label 1 = True."""
    spec = RunSpec(model=ModelSpec(model=str(tiny_gpt2), kind="seq-cls", num_labels=2, batch_size=8),
                   tasks=["math_verify"], task_cfg=TaskConfig(data_dir=verify_data, limit=8), output_dir=tmp_path,
                   run_name="cls", quiet=True)
    [path] = run(spec)
    entry = read_results(path)["tasks"]["math_verify"]
    samples = [json.loads(x) for x in (path.parent / "samples" / "math_verify.jsonl").read_text().splitlines()]
    assert entry["output_type"] == "classify" and len(samples) == 8
    for s in samples:
        assert len(s["logits"]) == 2 and s["pred"] == (s["logits"][1] > s["logits"][0])
    doc = _task(verify_data).docs()[0]
    [req] = _task(verify_data).requests(doc, ModelInfo("seq-cls"))
    assert req.inputs == (f"{doc['question']}\nAnswer: {doc['answer']}", doc["solution"])
    chat = MathVerify(TaskConfig(chat_template=True, options={"mode": "generate"}))
    [gen] = chat.requests(doc)
    assert gen.prompt[0][0] == "user" and gen.prompt[0][1].endswith("Final Output (True/False):")


def test_prompt_template_flag_reaches_the_prompts(cli, tiny_gpt2: Path, verify_data: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "mine.txt"
    tpl.write_text("Q: {question}\nClaimed: {answer}\nWork: {solution}\nCorrect?")
    out = tmp_path / "r"
    cli("run", "-m", str(tiny_gpt2), "-t", "math_verify", "--data-dir", str(verify_data), "--limit", "3",
        "--prompt-template", str(tpl), "-o", str(out), "--run-name", "tpl", "-q", check=True)
    samples = [json.loads(x) for x in (out / "tpl" / "samples" / "math_verify.jsonl").read_text().splitlines()]
    assert all(s["prompt"].startswith("Q: ") and s["prompt"].endswith("Correct?") for s in samples)
    bad = cli("run", "-m", str(tiny_gpt2), "-t", "math_verify", "--prompt-template", str(tmp_path / "none.txt"))
    assert bad.returncode == 2 and "--prompt-template" in bad.stderr
