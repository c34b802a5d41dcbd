"""Bad input to run, score, leaderboard and tasks: exit 2, one error line naming the flag, file or row, no traceback,
and nothing new or half-written in the output directory. (train/sweep and judge/generate/tournament have their own
tables in test_train_errors.py and test_judge_cli_errors.py.)

Each case builds its arguments from a small world of files made once per module: a tiny model, local GSM8K data,
and broken variants of each.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_main


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path, gsm8k_data: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    w: dict[str, Path] = {"model": tiny_gpt2, "data": gsm8k_data, "root": root}

    def data_dir(name: str, test_text: str) -> Path:
        d = root / name / "gsm8k"
        d.mkdir(parents=True)
        (d / "test.jsonl").write_text(test_text)
        return d.parent

    w["empty_data"] = data_dir("empty", "")
    w["nocol_data"] = data_dir("nocol", json.dumps({"question": "q"}) + "\n")
    w["badjson_data"] = data_dir("badjson", json.dumps({"question": "q", "answer": "#### 1"}) + "\n{oops\n")
    w["nogold_data"] = data_dir("nogold", json.dumps({"question": "q", "answer": "no number line"}) + "\n")
    w["answer_int_data"] = data_dir("answer_int", json.dumps({"question": "q", "answer": 5}) + "\n")
    w["row_list_data"] = data_dir("row_list", "[1, 2]\n")

    def data_file(name: str, rel: str, row: object) -> Path:
        """A --data-dir `name` holding one file `rel` whose first row is `row` (an official task layout)."""
        path = root / name / rel
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(row) + "\n")
        return root / name

    w["arc_choices_str"] = data_file("arc_choices_str", "arc/ARC-Easy-Test.jsonl",
                                     {"question": {"stem": "q", "choices": "A B"}, "answerKey": "A"})
    w["arc_choice_int"] = data_file("arc_choice_int", "arc/ARC-Easy-Test.jsonl",
                                    {"question": "q", "choices": {"text": [1, 2], "label": ["A", "B"]}, "answerKey": "A"})
    w["sentiment_text_int"] = data_file("sentiment_text_int", "sentiment_demo/test.jsonl", {"text": 5, "label": 1})
    w["rte_premise_list"] = data_file("rte_premise_list", "RTE/val.jsonl",
                                      {"premise": ["p"], "hypothesis": "h", "label": "entailment"})
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": "1", "question": "q", "answers": [{"text": 5, "answer_start": 0}]}]}]}]}
    w["squad_answer_int"] = data_file("squad_answer_int", "squad/dev-v1.1.json", squad)
    w["squad_bad_layout"] = data_file("squad_bad_layout", "squad/dev-v1.1.json", {"data": [{"paragraphs": ["c"]}]})
    w["e2e_mr_int"] = root / "e2e-mr-int.jsonl"
    w["e2e_mr_int"].write_text(json.dumps({"mr": 5, "ref": "A pub."}) + "\n")
    w["file"] = root / "a-file.txt"
    w["file"].write_text("x")
    w["no_config_adapter"] = root / "not-an-adapter"
    w["no_config_adapter"].mkdir()
    truncated = root / "truncated-model"
    shutil.copytree(tiny_gpt2, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    w["truncated"] = truncated
    corrupt = root / "corrupt-store"
    corrupt.mkdir()
    (corrupt / ".store.sqlite").write_bytes(b"this is not a database" * 100)
    w["corrupt"] = corrupt
    taken = root / "taken"
    (taken / "mine").mkdir(parents=True)
    (taken / "mine" / "results.json").write_text("{}")
    w["taken"] = taken
    w["prompt"] = root / "prompt.txt"
    w["prompt"].write_text("Q: {question}\n")
    lb = root / "lb"
    for name, body in {"list": "[1, 2]", "notjson": "{oops", "metrics_str": None, "metric_num": None,
                       "noschema": json.dumps({"tasks": {}})}.items():
        (lb / name).mkdir(parents=True)
        if body is None:
            metrics: object = "acc=0.5" if name == "metrics_str" else {"acc": 0.5}
            body = json.dumps({"schema_version": "1.0", "model": {"base": "m"}, "tasks": {"t": {"metrics": metrics}}})
        (lb / name / "results.json").write_text(body)
    w["lb"] = lb
    return w


def _run(w: dict[str, Path], *extra: str, data: str = "data") -> list[str]:
    return ["run", "--model", str(w["model"]), "--tasks", "gsm8k", "--data-dir", str(w[data]), "--limit", "2",
            "--max-new-tokens", "4", "-q", *extra]


def _task(w: dict[str, Path], task: str, data: str, *extra: str) -> list[str]:
    return ["run", "--model", str(w["model"]), "--tasks", task, "--data-dir", str(w[data]), "--limit", "2", "-q", *extra]


# (id, argv builder, output dir the case may write to (or None), substrings the error line must hold)
Case = tuple[str, Callable[[dict[str, Path]], list[str]], list[str]]
CASES: list[Case] = [
    ("limit-zero", lambda w: _run(w, "--limit", "0"), ["--limit", "> 0"]),
    ("limit-negative", lambda w: _run(w, "--limit", "-3"), ["--limit"]),
    ("batch-size-zero", lambda w: _run(w, "--batch-size", "0"), ["--batch-size", "> 0"]),
    ("batch-size-word", lambda w: _run(w, "--batch-size", "big"), ["--batch-size big", "auto"]),
    ("temperature-negative", lambda w: _run(w, "--temperature", "-1"), ["--temperature", ">= 0"]),
    ("temperature-nan", lambda w: _run(w, "--temperature", "nan"), ["--temperature"]),
    ("top-p-zero", lambda w: _run(w, "--top-p", "0"), ["--top-p"]),
    ("num-beams-zero", lambda w: _run(w, "--num-beams", "0"), ["--num-beams"]),
    ("no-repeat-negative", lambda w: _run(w, "--no-repeat-ngram-size", "-1"), ["--no-repeat-ngram-size"]),
    ("max-new-tokens-zero", lambda w: _run(w, "--max-new-tokens", "0"), ["--max-new-tokens"]),
    ("fewshot-negative", lambda w: _run(w, "--num-fewshot", "-1"), ["--num-fewshot"]),
    ("samples-greedy", lambda w: _run(w, "--samples", "3"), ["--samples", "--temperature"]),
    ("beams-and-sampling", lambda w: _run(w, "--num-beams", "2", "--temperature", "0.7"), ["--num-beams"]),
    ("samples-on-single-output-task", lambda w: ["run", "--model", str(w["model"]), "--tasks", "sentiment_demo",
                                                 "--samples", "4", "--temperature", "0.7"], ["--samples 4", "sentiment_demo"]),
    ("unknown-task-option", lambda w: _run(w, "--task-option", "bogus=1"), ["--task-option bogus", "gsm8k"]),
    ("task-option-of-other-task", lambda w: _run(w, "--task-option", "skip_meteor=1"), ["--task-option skip_meteor"]),
    ("prefixed-unknown-option", lambda w: _run(w, "--task-option", "gsm8k.nope=1"), ["gsm8k.nope", "primary"]),
    ("task-option-no-equals", lambda w: _run(w, "--task-option", "primary"), ["--task-option", "KEY=VALUE"]),
    ("task-option-bad-value", lambda w: _run(w, "--task-option", "primary=nope"), ["primary=nope", "strict"]),
    ("prompt-template-unused", lambda w: _run(w, "--prompt-template", str(w["prompt"])), ["prompt_template", "gsm8k"]),
    ("prompt-template-missing", lambda w: _run(w, "--prompt-template", str(w["root"] / "nope.txt")),
     ["--prompt-template", "not found"]),
    ("unknown-task", lambda w: ["run", "--model", str(w["model"]), "--tasks", "gsm9k"], ["--tasks", "gsm9k"]),
    ("empty-task-list", lambda w: ["run", "--model", str(w["model"]), "--tasks", " , "], ["--tasks"]),
    ("data-dir-missing", lambda w: ["run", "--model", str(w["model"]), "--tasks", "gsm8k", "--data-dir",
                                    str(w["root"] / "nowhere")], ["--data-dir", "not a directory"]),
    ("data-empty", lambda w: _run(w, data="empty_data"), ["test.jsonl", "no rows"]),
    ("data-missing-column", lambda w: _run(w, data="nocol_data"), ["test.jsonl row 1", "answer"]),
    ("data-bad-json", lambda w: _run(w, data="badjson_data"), ["test.jsonl:2", "JSON"]),
    ("data-no-gold", lambda w: _run(w, data="nogold_data"), ["row 1", "####"]),
    ("data-answer-not-string", lambda w: _run(w, data="answer_int_data"), ["test.jsonl row 1", "answer", "string"]),
    ("data-row-not-object", lambda w: _run(w, data="row_list_data"), ["test.jsonl row 1", "object"]),
    ("arc-choices-string", lambda w: _task(w, "arc_easy", "arc_choices_str"),
     ["ARC-Easy-Test.jsonl row 1", "question.choices", "list"]),
    ("arc-choice-text-number", lambda w: _task(w, "arc_easy", "arc_choice_int"), ["ARC-Easy-Test.jsonl row 1", "string"]),
    ("sentiment-text-number", lambda w: _task(w, "sentiment_demo", "sentiment_text_int"),
     ["sentiment_demo/test.jsonl row 1", "text", "string"]),
    ("glue-input-list", lambda w: _task(w, "rte", "rte_premise_list"), ["RTE/val.jsonl row 1", "premise", "string"]),
    ("squad-answer-number", lambda w: _task(w, "squad", "squad_answer_int"), ["dev-v1.1.json", "question 1", "string"]),
    ("squad-not-official-layout", lambda w: _task(w, "squad", "squad_bad_layout"),
     ["dev-v1.1.json", "question 1", "official layout"]),
    ("e2e-mr-number", lambda w: ["run", "--model", str(w["model"]), "--tasks", "e2e", "--task-option",
                                 f"data={w['e2e_mr_int']}", "--task-option", "skip_meteor=1", "-q"],
     ["e2e-mr-int.jsonl row 2", "mr", "string"]),
    ("output-dir-is-file", lambda w: _run(w, "--output-dir", str(w["file"])), ["--output-dir", "not a directory"]),
    ("adapter-missing", lambda w: _run(w, "--adapter", str(w["root"] / "nope")), ["--adapter", "not a directory"]),
    ("adapter-no-config", lambda w: _run(w, "--adapter", str(w["no_config_adapter"])), ["adapter_config.json"]),
    ("model-missing", lambda w: ["run", "--model", str(w["root"] / "no-model"), "--tasks", "gsm8k", "--data-dir",
                                 str(w["data"]), "-o", str(w["root"] / "out-model")], ["--model", "no-model"]),
    ("model-truncated", lambda w: ["run", "--model", str(w["truncated"]), "--tasks", "gsm8k", "--data-dir",
                                   str(w["data"]), "-o", str(w["root"] / "out-trunc")], ["model.safetensors", "truncated"]),
    ("backend-unknown", lambda w: _run(w, "--backend", "tgi9"), ["--backend tgi9", "hf"]),
    ("backend-option-unknown", lambda w: _run(w, "--backend-option", "max_loras=2"), ["--backend-option max_loras"]),
    ("backend-option-no-equals", lambda w: _run(w, "--backend-option", "dtype"), ["--backend-option", "KEY=VALUE"]),
    ("device-cuda", lambda w: _run(w, "--device", "cuda"), ["--device cuda", "CUDA"]),
    ("device-unknown", lambda w: _run(w, "--device", "tpu7"), ["--device tpu7"]),
    ("dtype-unknown", lambda w: _run(w, "--dtype", "float7"), ["--dtype", "float7"]),
    ("4bit-and-8bit", lambda w: _run(w, "--load-in-4bit", "--load-in-8bit"), ["--load-in-4bit", "--load-in-8bit"]),
    ("run-name-taken", lambda w: _run(w, "-o", str(w["taken"]), "--run-name", "mine"), ["--run-name mine", "--overwrite"]),
    ("resume-and-overwrite", lambda w: _run(w, "--resume", "--overwrite"), ["--resume", "--overwrite"]),
    ("corrupt-store", lambda w: _run(w, "-o", str(w["corrupt"]), "--resume"), [".store.sqlite", "delete it"]),
    ("fewshot-unsupported", lambda w: ["run", "--model", str(w["model"]), "--tasks", "sentiment_demo", "--num-fewshot",
                                       "2", "-o", str(w["root"] / "out-fs")], ["--num-fewshot 2", "sentiment_demo"]),
    ("generation-flag-unused", lambda w: ["run", "--model", str(w["model"]), "--tasks", "sentiment_demo", "--num-beams",
                                          "4", "-o", str(w["root"] / "out-beams")], ["--num-beams", "generates"]),
    ("score-squad-missing-data", lambda w: ["score", "squad", "--data", str(w["root"] / "dev.json"), "--predictions",
                                            str(w["file"])], ["dev.json"]),
    ("score-e2e-missing-hyps", lambda w: ["score", "e2e", "--refs", str(w["file"]), "--hyps", str(w["root"] / "h.txt")],
     ["h.txt"]),
    ("leaderboard-missing", lambda w: ["leaderboard", str(w["root"] / "no-results")], ["no-results"]),
    ("leaderboard-list", lambda w: ["leaderboard", str(w["lb"] / "list")], ["list/results.json", "JSON object"]),
    ("leaderboard-not-json", lambda w: ["leaderboard", str(w["lb"] / "notjson")], ["notjson/results.json", "JSON"]),
    ("leaderboard-metrics-not-objects", lambda w: ["leaderboard", str(w["lb"] / "metrics_str")], ["metrics_str", "metrics"]),
    ("leaderboard-metric-not-object", lambda w: ["leaderboard", str(w["lb"] / "metric_num")], ["metric_num", "acc"]),
    ("leaderboard-no-schema", lambda w: ["leaderboard", str(w["lb"] / "noschema")], ["noschema", "schema_version"]),
    ("leaderboard-format", lambda w: ["leaderboard", str(w["lb"] / "metric_num"), "--format", "xml"], ["--format", "xml"]),
]


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(case: Case, world: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, build, needles = case
    monkeypatch.chdir(world["root"])  # default output dirs (results/) would land here
    before = _snapshot(world["root"])
    code, out, err = run_main(monkeypatch, capsys, *build(world))
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:")]
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert _snapshot(world["root"]) == before, "the failed command wrote or changed files"


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 45


# --- usage errors through the installed console script -------------------------------------------------------------
HARNESS = Path(sys.executable).parent / "harness"
USAGE = [
    (["run", "--bogus"], "--bogus"),
    (["run", "--tasks", "gsm8k"], "--model"),
    (["run", "--model", "m", "--tasks", "gsm8k", "--limit", "abc"], "--limit"),
    (["no-such-command"], "no-such-command"),
    (["leaderboard", "--format"], "--format"),
]


@pytest.mark.skipif(not HARNESS.exists(), reason=f"no installed console script at {HARNESS}")
@pytest.mark.parametrize(("args", "needle"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_through_installed_script(args: list[str], needle: str, tmp_path: Path) -> None:
    """The real entry point, as a user on a fresh install runs it: typer's usage message and exit 2, no traceback."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([str(HARNESS), *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Error" in proc.stderr and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) <= 8 and not list(tmp_path.iterdir())


@pytest.mark.skipif(not HARNESS.exists(), reason=f"no installed console script at {HARNESS}")
def test_group_without_subcommand_prints_help(tmp_path: Path) -> None:
    proc = subprocess.run([str(HARNESS), "score"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "Usage: harness score" in text and "squad" in text and proc.returncode in (0, 2)


def test_corrupt_store_without_resume_is_named_too(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(monkeypatch, capsys, *_run(world, "-o", str(world["corrupt"])))
    assert code == 2 and ".store.sqlite" in err and err.count("\n") == 1


def test_failed_model_load_leaves_no_store(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = world["root"] / "out-noload"
    code, _, _ = run_main(monkeypatch, capsys, "run", "--model", str(world["truncated"]), "--tasks", "gsm8k",
                          "--data-dir", str(world["data"]), "-o", str(out))
    assert code == 2 and not (out / ".store.sqlite").exists()
    with pytest.raises(sqlite3.DatabaseError):  # the corrupt store of the other case really is unreadable
        sqlite3.connect(str(world["corrupt"] / ".store.sqlite")).execute("SELECT 1 FROM answers").fetchall()
