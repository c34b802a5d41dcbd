"""Nothing a user asks for is silently dropped: every generation flag reaches the requests, results.json records
what ran, lm-eval tasks take explicit flags over their YAML defaults, and run directories are never replaced
without --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.evaluate import RunSpec, plan_run_dirs
from harness.models.loading import ModelSpec
from harness.requests import Generate
from harness.results import read_results
from harness.task import TaskConfig

FLAGS = {"num_beams": 3, "length_penalty": 0.8, "no_repeat_ngram_size": 4, "max_new_tokens": 9}


def _gen(reqs: list) -> Generate:  # noqa: ANN001 - a task's requests
    [g] = [r for r in reqs if isinstance(r, Generate)]
    return g


def test_generation_flags_reach_every_generating_task(tmp_path: Path) -> None:
    from tasks.e2e import E2E
    from tasks.gsm8k import GSM8K
    from tasks.squad import SQuAD
    from tasks.verification import MathVerify

    cfg = TaskConfig(**FLAGS)
    made = [
        GSM8K(cfg).requests({"id": "0", "question": "q?", "answer": "#### 1"}),
        SQuAD(cfg).requests({"id": "0", "context": "c", "question": "q"}),
        E2E(cfg).requests({"id": "0", "mr": "name[x]", "refs": ["x"]}),
        MathVerify(TaskConfig(**FLAGS, options={"mode": "generate"})).requests(
            {"id": "0", "question": "q", "answer": "1", "solution": "s"}),
    ]
    for reqs in made:
        g = _gen(reqs)
        assert (g.num_beams, g.length_penalty, g.no_repeat_ngram_size, g.max_new_tokens) == (3, 0.8, 4, 9)
    sampled = _gen(GSM8K(TaskConfig(samples=4, temperature=0.7, top_p=0.9, seed=7)).requests(
        {"id": "0", "question": "q?", "answer": "#### 1"}))
    assert (sampled.n, sampled.temperature, sampled.top_p, sampled.seed) == (4, 0.7, 0.9, 7)


def test_results_record_the_generation_that_ran(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "2", "--num-beams", "2",
        "--length-penalty", "0.8", "--no-repeat-ngram-size", "3", "--max-new-tokens", "6", "-o", str(out),
        "--run-name", "beams", "-q", check=True)
    entry = read_results(out / "beams" / "results.json")["tasks"]["gsm8k"]
    gen = entry["generation"]
    assert (gen["num_beams"], gen["length_penalty"], gen["no_repeat_ngram_size"], gen["max_new_tokens"]) == (2, 0.8, 3, 6)
    assert entry["num_fewshot"] == 0 and entry["output_type"] == "generate"


def test_run_names_are_unique_and_never_silently_replaced(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    spec = RunSpec(model=ModelSpec(model=str(tiny_gpt2)), tasks=["gsm8k"], output_dir=tmp_path / "o")
    first = plan_run_dirs(spec)["base"]
    first.mkdir(parents=True)
    assert plan_run_dirs(spec)["base"] != first  # the same second, another name
    out = tmp_path / "named"
    args = ["run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "1",
            "--max-new-tokens", "2", "-o", str(out), "--run-name", "x", "-q"]
    cli(*args, check=True)
    created = read_results(out / "x" / "results.json")["created"]
    again = cli(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    cli(*args, "--overwrite", "--limit", "2", check=True)
    res = read_results(out / "x" / "results.json")
    assert res["tasks"]["gsm8k"]["n"] == 2 and res["created"] >= created
    assert not [p for p in out.iterdir() if p.name.startswith(".x.")], "no temporary or old directory left behind"


def _bridge_yaml(root: Path, gsm8k: Path) -> Path:
    y = root / "yaml"
    y.mkdir()
    (y / "tiny_gen_fs.yaml").write_text(f"""task: tiny_gen_fs
dataset_path: json
dataset_kwargs:
  data_files:
    train: {gsm8k / 'gsm8k' / 'train.jsonl'}
    test: {gsm8k / 'gsm8k' / 'test.jsonl'}
training_split: train
test_split: test
fewshot_split: train
num_fewshot: 3
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["Question:"]
  do_sample: false
  max_gen_toks: 24
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
""")
    return y


@pytest.mark.parametrize(("given", "shots", "budget"), [({}, 3, 24), ({"num_fewshot": 0}, 0, 24),
                                                         ({"num_fewshot": 1, "max_new_tokens": 7}, 1, 7)])
def test_lm_eval_explicit_flags_win_over_the_yaml(given: dict, shots: int, budget: int, gsm8k_data: Path,
                                                  tmp_path: Path) -> None:
    from tasks.lm_eval_bridge import LmEvalTask

    y = _bridge_yaml(tmp_path, gsm8k_data)
    task = LmEvalTask(TaskConfig(**given, options={"include_path": str(y)}), "tiny_gen_fs")
    docs = task.docs()[:3]
    for d in docs:
        g = _gen(task.requests(d))
        assert g.prompt.count("Question:") == shots + 1, g.prompt[:400]
        assert g.max_new_tokens == budget
    assert task.fewshot_used() == shots


def test_main_filters_only_known_warnings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The entry point used to ignore every UserWarning, FutureWarning and DeprecationWarning for the whole process."""
    import warnings

    from conftest import run_main

    with warnings.catch_warnings():
        warnings.resetwarnings()
        code, out, _ = run_main(monkeypatch, capsys, "--help")
        assert code == 0 and "Usage" in out
        blanket = [f for f in warnings.filters if f[0] == "ignore" and f[1] is None
                   and f[2] in (UserWarning, FutureWarning, DeprecationWarning)]
        assert not blanket, blanket
        with warnings.catch_warnings(record=True) as seen:  # with the filters main() installed, none reset
            for category in (UserWarning, FutureWarning, DeprecationWarning):
                warnings.warn(f"a real problem the user must see ({category.__name__})", category, stacklevel=1)
            warnings.warn("TypedStorage is deprecated. It will be removed", UserWarning, stacklevel=1)  # known noise
        assert [str(w.message) for w in seen] == [f"a real problem the user must see ({c})"
                                                  for c in ("UserWarning", "FutureWarning", "DeprecationWarning")]


def test_every_option_a_task_reads_is_declared() -> None:
    """A key a task reads but does not declare would be rejected as unknown: the declarations must cover the reads."""
    import inspect
    import re

    from harness.registry import make_tasks, task_names

    for name in task_names():
        if name.endswith(":"):
            continue
        for task in make_tasks(name, TaskConfig()):
            src = ""
            for cls in type(task).__mro__:  # GLUE's classes are made from specs: read the classes they come from
                try:
                    src += inspect.getsource(cls)
                except (OSError, TypeError):
                    continue
            read = set(re.findall(r'(?:self\.option|self\._opt)\("([a-z_]+)"', src))
            read |= set(re.findall(r'options\.get\("([a-z_]+)"', src))
            assert read <= set(task.option_keys), (task.name, read - set(task.option_keys))
