"""--num-fewshot k on SQuAD, E2E, GLUE (causal), math_verify and the forgetting tasks: k exemplars from the train split,
each the zero-shot prompt plus its target and a blank line, drawn by the seed, never the evaluated row itself.

(ARC, HellaSwag and WinoGrande prompts are checked against lm-eval's own in tests/test_lm_eval_parity.py.)
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import run_main

from harness.errors import HarnessError
from harness.evaluate import check_honoured
from harness.registry import make_tasks
from harness.results import read_results
from harness.task import CAUSAL, ModelInfo, Task, TaskConfig
from harness.testing.verification import write_verification_data
from tasks._common import draw

FEWSHOT_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "winogrande", "squad", "e2e", "sst2", "stsb", "glue",
                 "math_verify")


def _task(name: str, data_dir: Path | None = None, k: int = 0, seed: int = 1234, **options: str) -> Any:
    [t] = make_tasks(name, TaskConfig(data_dir=data_dir, num_fewshot=k, seed=seed, options=options))
    return t


def _prompts(t: Task) -> list[Any]:
    """What each doc's first request shows the model (a Generate prompt or a LogLikelihood context)."""
    out = []
    for d in t.docs():
        r = t.requests(d, CAUSAL)[0]
        out.append(getattr(r, "prompt", None) or r.context)  # type: ignore[attr-defined]
    return out


def check_fewshot(make: Any, zero: dict[str, str], shot_texts: set[str], k: int) -> list[str]:
    """The shared contract: k blank-line-separated exemplars from train, then the zero-shot prompt; seed-determined.

    `make(seed)` builds the few-shot task; `zero` maps doc id -> its zero-shot prompt; `shot_texts` holds every train
    row formatted as an exemplar (zero-shot prompt + target). Returns the prompts (seed 1234).
    """
    t = make(1234)
    docs = t.docs()
    prompts = [t.requests(d, CAUSAL)[0] for d in docs]
    texts = [getattr(r, "prompt", None) or r.context for r in prompts]
    for d, p in zip(docs, texts):
        parts = p.split("\n\n")
        assert len(parts) == k + 1 and parts[-1] == zero[d["id"]], d["id"]
        assert set(parts[:-1]) <= shot_texts and len(set(parts[:-1])) == k, d["id"]
        assert zero[d["id"]] not in {s.rsplit(" ", 1)[0] for s in parts[:-1]}
    assert t.fewshot_used() == k and "few-shot: " in t.source_description
    assert _prompts(make(1234)) == texts  # the same seed draws the same exemplars
    assert _prompts(make(99)) != texts
    assert len({p.rsplit("\n\n", 1)[0] for p in texts}) > 1  # each row draws its own exemplars
    return texts


# --- the sampler ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("oversample", [True, False])
def test_draw_never_returns_the_doc_and_repeats_for_a_seed(oversample: bool) -> None:
    keys = [f"row{i}" for i in range(6)]
    for seed in range(50):
        for k in (1, 3, 5, 8):
            got = draw(random.Random(seed), keys, k, "row2", oversample)
            assert "row2" not in {keys[i] for i in got} and len(set(got)) == len(got) == min(k, 5)
            assert got == draw(random.Random(seed), keys, k, "row2", oversample)
    # with the doc outside the pool, lm-eval's own draw: k (or k + 1 then the first k) of random.Random(seed)
    assert draw(random.Random(5), keys, 3, "other", False) == random.Random(5).sample(range(6), 3)
    assert draw(random.Random(5), keys, 3, "other", True) == random.Random(5).sample(range(6), 4)[:3]


@pytest.mark.parametrize("name", FEWSHOT_TASKS)
def test_fewshot_only_for_causal_models(name: str) -> None:
    t = _task(name, k=2)
    assert t.supports_fewshot(CAUSAL)
    for kind in ("seq-cls", "image"):
        assert not t.supports_fewshot(ModelInfo(kind))
        with pytest.raises(HarnessError, match=rf"--num-fewshot 2: task {name} has no few-shot prompt for a {kind} model"):
            check_honoured(t.cfg, [(t, [], "")], ModelInfo(kind))


# --- SQuAD -------------------------------------------------------------------------------------------------------------


def _squad_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    paragraphs = [{"context": c, "qas": [{"id": f"q{i}-{len(c)}", "question": q, "answers": [{"text": a, "answer_start": 0}]}]}
                  for i, (c, q, a) in enumerate(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


CITIES = [("Paris", "France"), ("Rome", "Italy"), ("Lima", "Peru"), ("Oslo", "Norway"), ("Cairo", "Egypt"),
          ("Quito", "Ecuador"), ("Hanoi", "Vietnam"), ("Accra", "Ghana"), ("Dakar", "Senegal"), ("Sofia", "Bulgaria")]


def _city(c: str, n: str) -> tuple[str, str, str]:
    return f"{c} is the capital of {n}.", f"Which country is {c} the capital of?", n


def test_squad_exemplars_come_from_train_exclude_the_doc_and_repeat(tmp_path: Path) -> None:
    _squad_file(tmp_path / "squad" / "dev-v1.1.json", [_city(c, n) for c, n in CITIES[:4]])
    train = [_city(c, n) for c, n in CITIES[4:]] + [_city(*CITIES[0])]  # the first dev question is in train too
    _squad_file(tmp_path / "squad" / "train-v1.1.json", train)
    zero_task = _task("squad", tmp_path)
    zero = {d["id"]: zero_task.requests(d)[0].prompt for d in zero_task.docs()}
    shots = {f"Context: {c}\nQuestion: {q}\nAnswer: {a}" for c, q, a in train}
    texts = check_fewshot(lambda seed: _task("squad", tmp_path, 3, seed), zero, shots, 3)
    assert texts[0].count("Paris") == 2  # the dev question itself only, never its copy in train
    # a pool of k + 1 that holds the doc: the exemplars are exactly the other k
    _squad_file(tmp_path / "small" / "squad" / "train-v1.1.json", [_city(*c) for c in CITIES[:4]])
    small = _task("squad", tmp_path / "small", 3, data=str(tmp_path / "squad" / "dev-v1.1.json"))
    for d in small.docs():
        assert {s["question"] for s in small.shots(d)} == {_city(*c)[1] for c in CITIES[:4]} - {d["question"]}
    chat = make_tasks("squad", TaskConfig(data_dir=tmp_path, num_fewshot=2, chat_template=True))[0]
    d = chat.docs()[1]
    turns = chat.requests(d)[0].prompt
    assert [r for r, _ in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[1][1] == chat.shots(d)[0]["answers"][0] and turns[-1] == ("user", zero[d["id"]])


def test_squad_train_examples_stay_zero_shot_and_missing_train_is_one_line(tmp_path: Path) -> None:
    _squad_file(tmp_path / "squad" / "dev-v1.1.json", [_city(*CITIES[0])])
    _squad_file(tmp_path / "squad" / "train-v1.1.json", [_city(*c) for c in CITIES[1:]])
    t = _task("squad", tmp_path, 3)
    t.docs()
    assert all("\n\n" not in ex["prompt"] for ex in t.train_examples("train"))
    (tmp_path / "squad" / "train-v1.1.json").unlink()
    with pytest.raises(HarnessError) as e:
        _task("squad", tmp_path, 3).docs()
    msg = str(e.value)
    assert msg.startswith("--num-fewshot 3: task squad takes its exemplars from the train split: ") and "\n" not in msg
    assert "rajpurkar/squad" in msg and "train-v1.1.json" in msg


# --- E2E ---------------------------------------------------------------------------------------------------------------


def _e2e_csv(path: Path, pairs: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(["mr", "ref"])
        w.writerows(pairs)


FOODS = ["Italian", "French", "Chinese", "Indian", "English", "Japanese", "Fast food", "Thai"]


def _mr(i: int) -> str:
    return f"name[Place {i}], food[{FOODS[i % len(FOODS)]}]"


def test_e2e_exemplars_are_train_pairs_never_the_mr_itself(tmp_path: Path) -> None:
    _e2e_csv(tmp_path / "e2e" / "testset_w_refs.csv", [(_mr(i), f"Place {i} serves food.") for i in range(3)])
    train = [(_mr(i), f"Place {i} has {FOODS[i % len(FOODS)]} food.") for i in range(3, 9)]
    train += [(_mr(0), "Place 0 is a restaurant."), (_mr(0), "Place 0 serves Italian food.")]  # the test MR, twice
    _e2e_csv(tmp_path / "e2e" / "trainset.csv", train)
    zero_task = _task("e2e", tmp_path, skip_meteor="1")
    zero = {d["id"]: zero_task.requests(d)[0].prompt for d in zero_task.docs()}
    shots = {f"Meaning representation: {mr}\nDescription: {ref}" for mr, ref in train}
    texts = check_fewshot(lambda seed: _task("e2e", tmp_path, 4, seed, skip_meteor="1"), zero, shots, 4)
    assert "Place 0 is a restaurant." not in texts[0] and "Place 0 serves Italian" not in texts[0]
    t = _task("e2e", tmp_path, 4, skip_meteor="1")
    d = t.docs()[0]
    rec = t.score(d, [["Place 0 serves food."]])
    assert rec["prompt"] == t.requests(d)[0].prompt  # the samples file shows the few-shot prompt


# --- GLUE (causal) -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sst2_halves(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SST-2 dev set in two: the first 400 rows as train.tsv, the rest as dev.tsv."""
    lines = (shared_data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    root = tmp_path_factory.mktemp("sst2")
    (root / "SST-2").mkdir()
    (root / "SST-2" / "train.tsv").write_text("\n".join(lines[:401]) + "\n", encoding="utf-8")
    (root / "SST-2" / "dev.tsv").write_text("\n".join([lines[0]] + lines[401:]) + "\n", encoding="utf-8")
    return root


def test_glue_causal_exemplars_carry_their_label_words(sst2_halves: Path) -> None:
    zero_task = _task("sst2", sst2_halves, split="validation[:40]")
    zero = {d["id"]: zero_task.requests(d)[0].context for d in zero_task.docs()}
    train = [x.split("\t") for x in (sst2_halves / "SST-2" / "train.tsv").read_text().splitlines()[1:]]
    words = (" negative", " positive")
    shots = {f"{s}\nQuestion: Is this sentence positive or negative?\nAnswer:{words[int(y)]}" for s, y in train}
    check_fewshot(lambda seed: _task("sst2", sst2_halves, 5, seed, split="validation[:40]"), zero, shots, 5)
    t = _task("sst2", sst2_halves, 5, split="validation[:40]")
    d = t.docs()[3]
    assert t.score(d, [(-1.0, False), (-2.0, False)])["prompt"] == t.requests(d)[0].context
    # inside the glue group a member draws exactly what it draws alone
    group = _task("glue", sst2_halves, 5, seed=1234, tasks="sst2", **{"sst2.split": "validation[:40]"})
    gdocs = group.docs()
    assert [r.context for gd in gdocs for r in group.requests(gd)] == [r.context for x in t.docs() for r in t.requests(x)]
    assert group.fewshot_used() == 5 and "few-shot: " in group.source_description


def test_glue_stsb_exemplar_is_the_rounded_score_and_missing_train_names_it(tmp_path: Path) -> None:
    (tmp_path / "STS-B").mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    rows = [f"{i}\tmain\tf\t2012\t{i}\tx\tx\tA man plays {i}.\tA man plays music {i}.\t{i % 5}.{i % 10}" for i in range(6)]
    (tmp_path / "STS-B" / "dev.tsv").write_text("\n".join([header, *rows[:2]]) + "\n")
    with pytest.raises(HarnessError) as e:
        _task("stsb", tmp_path, 1).docs()
    assert "--num-fewshot 1: task stsb takes its exemplars from the train split" in str(e.value)
    assert "STS-B/train.tsv" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "STS-B" / "train.tsv").write_text("\n".join([header, *rows[2:]]) + "\n")
    t = _task("stsb", tmp_path, 4)
    d = t.docs()[0]
    parts = t.requests(d)[0].context.split("\n\n")
    expected = {f"{t.prompt(s)} {round(s['label'])}" for s in t.fewshot_pool()[0]}
    assert len(parts) == 5 and set(parts[:4]) == expected and parts[4] == t.prompt(d)


# --- math_verify -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["loglikelihood", "generate"])
def test_math_verify_exemplars_from_train_in_both_causal_modes(mode: str, tmp_path: Path) -> None:
    root = write_verification_data(tmp_path, n_train=30, n_validation=8, n_test=2)
    zero_task = _task("math_verify", root, mode=mode)
    zero = {}
    for d in zero_task.docs():
        r = zero_task.requests(d)[0]
        zero[d["id"]] = getattr(r, "prompt", None) or r.context
    pool, where = zero_task.fewshot_pool()
    assert where.endswith("math_verify/train.jsonl") and len(pool) == 30
    shots = {zero_task.prompt(s) + (" True" if s["label"] else " False") for s in pool}
    # the prompt itself holds blank lines: compare whole prefixes rather than split on them
    for seed in (1234, 5):
        t = _task("math_verify", root, 2, seed, mode=mode)
        for d in t.docs():
            r = t.requests(d)[0]
            text = getattr(r, "prompt", None) or r.context
            head = "".join(f"{zero_task.prompt(s)}{' True' if s['label'] else ' False'}\n\n" for s in t.shots(d))
            assert text == head + zero[d["id"]] and len(t.shots(d)) == 2
            assert all(zero_task.prompt(s) + (" True" if s["label"] else " False") in shots for s in t.shots(d))
    a = _task("math_verify", root, 2, mode=mode)
    b = _task("math_verify", root, 2, mode=mode)
    assert [a.shots(d) for d in a.docs()] == [b.shots(d) for d in b.docs()]


def test_math_verify_evaluated_on_train_never_shows_the_row_and_empty_pool_is_one_line(tmp_path: Path) -> None:
    root = write_verification_data(tmp_path / "a", n_train=4, n_validation=2, n_test=2)
    t = _task("math_verify", root, 3, split="train")
    for d in t.docs():
        assert len(t.shots(d)) == 3 and all(s["id"] != d["id"] for s in t.shots(d))
    chat = make_tasks("math_verify", TaskConfig(data_dir=root, num_fewshot=1, chat_template=True,
                                                options={"mode": "generate"}))[0]
    d = chat.docs()[0]
    turns = chat.requests(d)[0].prompt
    assert [r for r, _ in turns] == ["user", "assistant", "user"] and turns[1][1] in ("True", "False")
    root = write_verification_data(tmp_path / "b", n_train=40, n_validation=0, n_test=2)
    (root / "math_verify" / "validation.jsonl").unlink()  # validation = the last 1,000 train rows: nothing is left
    with pytest.raises(HarnessError, match=r"--num-fewshot 2: task math_verify: .*train.jsonl\[:-1000\] has no rows"):
        _task("math_verify", root, 2).docs()


# --- the forgetting tasks: train layouts, a short train split, a missing one -------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.testing.suite import write_suite_data

    root = write_suite_data(tmp_path_factory.mktemp("suite"), n=8)
    other = write_suite_data(tmp_path_factory.mktemp("other"), n=6, seed=3)
    for config in ("ARC-Easy", "ARC-Challenge"):
        (root / "arc" / f"{config}-Train.jsonl").write_text((other / "arc" / f"{config}-Test.jsonl").read_text())
    (root / "hellaswag" / "hellaswag_train.jsonl").write_text((other / "hellaswag" / "hellaswag_val.jsonl").read_text())
    (root / "winogrande" / "train_xl.jsonl").write_text((other / "winogrande" / "dev.jsonl").read_text())
    (root / "winogrande" / "train_xl-labels.lst").write_text((other / "winogrande" / "dev-labels.lst").read_text())
    return root


@pytest.mark.parametrize("name", ["arc_easy", "arc_challenge", "hellaswag", "winogrande"])
def test_forgetting_tasks_read_the_official_train_layouts(name: str, suite: Path, tmp_path: Path) -> None:
    t = _task(name, suite, 2)
    docs = t.docs()
    assert t.fewshot_used() == 2 and t.source_description.split("few-shot: ")[1].endswith(
        {"arc_easy": "ARC-Easy-Train.jsonl", "arc_challenge": "ARC-Challenge-Train.jsonl",
         "hellaswag": "hellaswag_train.jsonl", "winogrande": "train_xl.jsonl"}[name])
    pool = [t.fewshot_key(r) for r in t.fewshot_pool()[0]]
    for d in docs:
        assert len(t.shots(d)) == 2 and all(t.fewshot_key(s) in pool for s in t.shots(d))
        assert all(c.count("\n\n") == 2 or name == "winogrande" for c in {r.context for r in t.requests(d)})
    if name == "winogrande":  # the labels file beside train_xl.jsonl gave the exemplars their answers
        labels = (suite / "winogrande" / "train_xl-labels.lst").read_text().split()
        assert [r["answer"] for r in t.fewshot_pool()[0]] == labels
    short = _task(name, suite, 9)  # 6 train rows for k = 9: every row there is, and results.json says so
    short.docs()
    assert short.fewshot_used() == 6
    layout = {"arc_easy": "arc/ARC-Easy-Train.jsonl", "arc_challenge": "arc/ARC-Challenge-Train.jsonl",
              "hellaswag": "hellaswag/hellaswag_train.jsonl", "winogrande": "winogrande/train_xl.jsonl"}[name]
    import shutil

    shutil.copytree(suite, tmp_path / "d")
    (tmp_path / "d" / layout).unlink()
    with pytest.raises(HarnessError) as e:
        _task(name, tmp_path / "d", 1).docs()
    assert str(e.value).startswith(f"--num-fewshot 1: task {name} takes its exemplars from the train split: --data-dir")
    assert layout in str(e.value) and "\n" not in str(e.value)


def test_winogrande_exemplar_with_the_blank_at_the_end_has_no_delimiter() -> None:
    """lm-eval's build_qa_turn adds the target delimiter and the blank line only when the target is not empty."""
    from tasks.winogrande import exemplar

    doc = {"sentence": "The cup fell off the table because it was _", "option1": "fragile", "option2": "wobbly",
           "answer": "2"}
    assert exemplar(doc) == "The cup fell off the table because it was wobbly"
    assert exemplar({**doc, "sentence": "It was _ after all."}) == "It was wobbly after all.\n\n"


# --- through the CLI ---------------------------------------------------------------------------------------------------


def test_run_records_the_fewshot_prompt_and_k(tiny_gpt2: Path, sst2_halves: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    code, _, err = run_main(monkeypatch, capsys, "run", "-m", str(tiny_gpt2), "-t", "sst2", "--data-dir", str(sst2_halves),
                            "--num-fewshot", "3", "--limit", "4", "-o", str(out), "--run-name", "fs", "-q")
    assert code == 0, err
    entry = read_results(out / "fs" / "results.json")["tasks"]["sst2"]
    assert entry["num_fewshot"] == 3 and "few-shot: " in entry["data"]["source"]
    samples = [json.loads(x) for x in (out / "fs" / "samples" / "sst2.jsonl").read_text().splitlines()]
    t = _task("sst2", sst2_halves, 3)
    docs = t.docs()[:4]
    assert [s["prompt"] for s in samples] == [t.requests(d)[0].context for d in docs]
    assert all(s["prompt"].count("\n\n") == 3 for s in samples)
