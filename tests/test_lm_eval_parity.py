"""Parity with lm-eval 0.4.13: same tiny model, same rows -> the same requests, per-choice log-likelihoods within 1e-4
and identical acc / acc_norm, for HellaSwag, WinoGrande, ARC-Easy and ARC-Challenge.

lm-eval's own task YAMLs are included and only pointed at local json files (the same rows our tasks read from
the official layouts), so its prompts, preprocessing and scoring are the installed library's.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import lm_eval
import pytest

LM_TASKS = Path(lm_eval.__file__).parent / "tasks"
SUITE = ("hellaswag", "winogrande", "arc_easy", "arc_challenge")
INCLUDE = {"hellaswag": "hellaswag/hellaswag.yaml", "winogrande": "winogrande/default.yaml",
           "arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml"}


def _hub_arc(src: Path, dst: Path) -> Path:
    """Official nested ARC rows -> the hub's flat layout that lm-eval's arc YAML templates read."""
    rows = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    flat = [{"id": r["id"], "question": r["question"]["stem"], "answerKey": r["answerKey"],
             "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                         "label": [c["label"] for c in r["question"]["choices"]]}} for r in rows]
    dst.write_text("".join(json.dumps(r) + "\n" for r in flat))
    return dst


def _wino_with_answers(src: Path, dst: Path) -> Path:
    rows = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    labels_file = src.with_name("dev-labels.lst")
    if labels_file.exists():
        labels = [x.strip() for x in labels_file.read_text().splitlines() if x.strip()]
        rows = [{**r, "answer": r.get("answer") or lab} for r, lab in zip(rows, labels)]
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def lm_eval_samples(model_dir: Path, files: dict[str, Path], work: Path, limit: int) -> dict[str, Any]:
    """Run lm-eval 0.4.13 (HFLM on the same weights) on local copies of its own task configs."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ydir = work / "yaml"
    ydir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        split = "test" if name.startswith("arc") else "validation"
        (ydir / f"{name}.yaml").write_text(
            f"include: {LM_TASKS / INCLUDE[name]}\ntask: local_{name}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    {split}: {data}\ntraining_split: null\nvalidation_split: "
            f"{'null' if split == 'test' else 'validation'}\n" + ("test_split: test\n" if split == "test" else ""))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    lm = HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(model_dir), batch_size=8, device="cpu")
    out = simple_evaluate(model=lm, tasks=[f"local_{n}" for n in files], log_samples=True, limit=limit,
                          task_manager=TaskManager(include_path=str(ydir), include_defaults=False))
    return {n: (out["results"][f"local_{n}"], sorted(out["samples"][f"local_{n}"], key=lambda s: s["doc_id"]))
            for n in files}


def our_samples(model_dir: Path, data_dir: Path, work: Path, limit: int, tasks: tuple[str, ...]) -> dict[str, Any]:
    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec
    from harness.results import read_results
    from harness.task import TaskConfig

    spec = RunSpec(model=ModelSpec(model=str(model_dir), batch_size=8), tasks=list(tasks),
                   task_cfg=TaskConfig(data_dir=data_dir, limit=limit), output_dir=work / "ours", quiet=True)
    [path] = run(spec)
    res = read_results(path)
    out = {}
    for t in tasks:
        samples = [json.loads(x) for x in (path.parent / "samples" / f"{t}.jsonl").read_text().splitlines()]
        out[t] = (res["tasks"][t]["metrics"], samples)
    return out


def check_parity(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for task, (metrics, samples) in ours.items():
        lm_results, lm_samples = theirs[task]
        assert len(samples) == len(lm_samples) > 0, task
        for s, ref in zip(samples, lm_samples):
            args = [tuple(a) for a in ref["arguments"]]
            ctxs = s["prompt"] if isinstance(s["prompt"], list) else [s["prompt"]] * len(s["continuations"])
            assert list(zip(ctxs, s["continuations"])) == args, (task, s["doc_id"])
            ref_lls = [float(r[0]) for r in ref["filtered_resps"]]
            assert s["loglikelihoods"] == pytest.approx(ref_lls, abs=1e-4), (task, s["doc_id"])
            assert s["is_greedy"] == [bool(r[1]) for r in ref["filtered_resps"]], (task, s["doc_id"])
            for m in s["metrics"]:
                assert s["metrics"][m] == ref[m], (task, s["doc_id"], m)
        for m, v in metrics.items():
            assert v["value"] == pytest.approx(lm_results[f"{m},none"], abs=1e-12), (task, m)
            assert v["stderr"] == pytest.approx(lm_results[f"{m}_stderr,none"], rel=1e-9), (task, m)


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.testing.suite import write_suite_data

    return write_suite_data(tmp_path_factory.mktemp("suite"), n=20)


def _files(data_dir: Path, work: Path, hellaswag_dir: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    return {"hellaswag": hellaswag_dir / "hellaswag" / "hellaswag_val.jsonl",
            "winogrande": _wino_with_answers(data_dir / "winogrande" / "dev.jsonl", work / "wino.jsonl"),
            "arc_easy": _hub_arc(data_dir / "arc" / "ARC-Easy-Test.jsonl", work / "arc_easy.jsonl"),
            "arc_challenge": _hub_arc(data_dir / "arc" / "ARC-Challenge-Test.jsonl", work / "arc_challenge.jsonl")}


@pytest.mark.parametrize("model_fixture", ["tiny_gpt2", "tiny_llama"])
def test_parity_on_project_rows(model_fixture: str, request: pytest.FixtureRequest, suite_dir: Path,
                                tmp_path: Path) -> None:
    """Rows the project writes in the official layouts (HellaSwag bracket artefacts, WinoGrande labels file)."""
    model_dir = request.getfixturevalue(model_fixture)
    theirs = lm_eval_samples(model_dir, _files(suite_dir, tmp_path / "lm", suite_dir), tmp_path / "lm", limit=20)
    check_parity(our_samples(model_dir, suite_dir, tmp_path, 20, SUITE), theirs)


def test_parity_on_real_files_with_gpt2_bpe(shared_data: Path, gpt2_bpe: Any, suite_dir: Path,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """The real ARC and WinoGrande files, the real GPT-2 tokenizer, a random tiny GPT-2."""
    import shutil

    from harness.testing.tiny import build_causal_lm

    model_dir = build_causal_lm(tmp_path_factory.mktemp("gpt2bpe-model"), gpt2_bpe, d_model=64, n_layer=2, n_head=4)
    data = tmp_path_factory.mktemp("real")
    for sub in ("arc", "winogrande", "hellaswag"):  # a --data-dir in the official layout: links, not copies
        (data / sub).mkdir()
    for f in ("ARC-Easy-Test.jsonl", "ARC-Challenge-Test.jsonl"):
        (data / "arc" / f).symlink_to(shared_data / "arc" / f)
    for f in ("dev.jsonl", "dev-labels.lst"):
        (data / "winogrande" / f).symlink_to(shared_data / "winogrande" / f)
    shutil.copy(suite_dir / "hellaswag" / "hellaswag_val.jsonl", data / "hellaswag" / "hellaswag_val.jsonl")
    work = tmp_path_factory.mktemp("work")
    theirs = lm_eval_samples(model_dir, _files(data, work / "lm", suite_dir), work / "lm", limit=40)
    check_parity(our_samples(model_dir, data, work, 40, SUITE), theirs)


@pytest.mark.parametrize("batch_size,keep_mode", [(1, "mask"), (3, "mask"), (8, "mask"), (8, "int"), (8, None)])
def test_loglikelihood_edge_cases_match_hflm(tiny_llama: Path, batch_size: int, keep_mode: str | None) -> None:
    """Empty context, trailing spaces, continuations sharing first tokens, left truncation, duplicates, one-token
    continuations: our shared-prefix scoring equals lm-eval's HFLM (one full forward per request), whichever way
    the model code lets us skip the vocabulary projection."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.models.causal import CausalLM
    from harness.models.loading import ModelSpec
    from harness.requests import LogLikelihood
    from harness.runner import run_requests

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ours = CausalLM(model, tok, {"base": "tiny"}, ModelSpec(model=str(tiny_llama), batch_size=batch_size))
    import inspect

    detected = ours._forward_kwargs()[1]
    # transformers >= 5.20's Llama slices logits with slice_logits_to_keep (a boolean mask works); older, an int only
    uses_helper = "slice_logits_to_keep(" in inspect.getsource(type(model).forward)
    assert detected == ("mask" if uses_helper else "int")
    if keep_mode == "mask" and detected != "mask":
        pytest.skip("this transformers' Llama takes only an int logits_to_keep (no boolean-mask mode to test)")
    ours._fwd = (ours._fwd[0], keep_mode)
    q = "Question: Tom has 3 apples. How many apples?\nAnswer:"
    long = " ".join(["Tom has 3 apples and gets 4 more."] * 80)  # longer than the 512 positions: left-truncated
    reqs = [LogLikelihood(q, c) for c in (" 3 apples", " 3 apples and", " 7", " 7 apples.", " 3")]
    reqs += [LogLikelihood("", " Tom has 3 apples."), LogLikelihood("Ana has ", "2 books."), LogLikelihood(long, " 7"),
             LogLikelihood(long, " 7 apples"), LogLikelihood("Tom gives Li", " 2 coins."),
             LogLikelihood("Tom gives Ana", " 2 coins.")]
    answers = run_requests(ours, "k", reqs + reqs[:2], quiet=True)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")
    ref = lm.loglikelihood([Instance("loglikelihood", {}, (r.context, r.continuation), i) for i, r in enumerate(reqs)],
                           disable_tqdm=True)
    for r, (ll, greedy) in zip(reqs, ref):
        assert answers[r.key()][0] == pytest.approx(ll, abs=1e-4), r
        assert answers[r.key()][1] == greedy, r


# --- few-shot: the exact prompts lm-eval builds, from its own task objects (no model is run) -------------------------


def lm_eval_fewshot_tasks(files: dict[str, tuple[Path, Path]], ydir: Path) -> dict[str, Any]:
    """lm-eval's task objects from its own YAMLs, with the train split and the evaluated split pointed at local files."""
    from lm_eval.tasks import TaskManager

    ydir.mkdir(parents=True, exist_ok=True)
    for name, (train, data) in files.items():
        split = "test" if name.startswith("arc") else "validation"
        (ydir / f"{name}.yaml").write_text(
            f"include: {LM_TASKS / INCLUDE[name]}\ntask: fs_{name}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    train: {train}\n    {split}: {data}\ntraining_split: train\n"
            f"validation_split: {'null' if split == 'test' else 'validation'}\n"
            + ("test_split: test\n" if split == "test" else ""))
    loaded = TaskManager(include_path=str(ydir), include_defaults=False).load([f"fs_{n}" for n in files])["tasks"]
    return {n: loaded[f"fs_{n}"] for n in files}


def lm_eval_contexts(task: Any, k: int, seed: int, limit: int) -> list[list[tuple[str, str]]]:
    """Per doc, the (context, continuation) arguments lm-eval's requests carry, after simple_evaluate's own set-up."""
    task.set_config(key="num_fewshot", value=k)
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(limit=limit)
    per_doc: dict[int, list[Any]] = {}
    for inst in task.instances:
        per_doc.setdefault(inst.doc_id, []).append(inst)
    return [[tuple(i.arguments) for i in sorted(per_doc[d], key=lambda i: i.idx)] for d in sorted(per_doc)]


def our_contexts(name: str, data_dir: Path, k: int, seed: int, limit: int) -> list[list[tuple[str, str]]]:
    from harness.registry import make_tasks
    from harness.task import TaskConfig

    [t] = make_tasks(name, TaskConfig(data_dir=data_dir, num_fewshot=k, seed=seed))
    docs = t.docs()[:limit]
    assert t.fewshot_used() == k and "few-shot: " in t.source_description
    return [[(r.context, r.continuation) for r in t.requests(d)] for d in docs]


def _jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def fewshot_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """One --data-dir in the official layouts (ours) and the same rows as flat json files (lm-eval's).

    ARC: the real Dev file serves as the train split and the real Test rows are evaluated. WinoGrande: the real dev
    rows split in two (the first half is the train split; the second half keeps its answers in dev-labels.lst).
    HellaSwag (no real copy here): rows the project writes, and the train file also holds three evaluated rows
    verbatim, so lm-eval's rule of drawing k + 1 and dropping the doc itself is exercised.
    """
    from harness.testing.suite import write_suite_data

    ours = tmp_path_factory.mktemp("fewshot-ours")
    lm = tmp_path_factory.mktemp("fewshot-lm")
    files: dict[str, tuple[Path, Path]] = {}
    (ours / "arc").mkdir()
    for config in ("ARC-Easy", "ARC-Challenge"):
        (ours / "arc" / f"{config}-Train.jsonl").symlink_to(shared_data / "arc" / f"{config}-Dev.jsonl")
        (ours / "arc" / f"{config}-Test.jsonl").symlink_to(shared_data / "arc" / f"{config}-Test.jsonl")
        name = "arc_easy" if config == "ARC-Easy" else "arc_challenge"
        files[name] = (_hub_arc(shared_data / "arc" / f"{config}-Dev.jsonl", lm / f"{name}_train.jsonl"),
                       _hub_arc(shared_data / "arc" / f"{config}-Test.jsonl", lm / f"{name}_test.jsonl"))
    wino = [json.loads(x) for x in (shared_data / "winogrande" / "dev.jsonl").read_text().splitlines() if x.strip()]
    train, dev = wino[: len(wino) // 2], wino[len(wino) // 2:]
    (ours / "winogrande").mkdir()
    _jsonl(train, ours / "winogrande" / "train_xl.jsonl")
    _jsonl([{k: v for k, v in r.items() if k != "answer"} for r in dev], ours / "winogrande" / "dev.jsonl")
    (ours / "winogrande" / "dev-labels.lst").write_text("".join(r["answer"] + "\n" for r in dev))
    files["winogrande"] = (_jsonl(train, lm / "wino_train.jsonl"), _jsonl(dev, lm / "wino_dev.jsonl"))
    # The writer's own directories, never `ours`: its arc/ files are links to the read-only shared data.
    val, other = (write_suite_data(tmp_path_factory.mktemp(f"fewshot-suite{s}"), n=30, seed=s) for s in (0, 1))
    hs_val = [json.loads(x) for x in (val / "hellaswag" / "hellaswag_val.jsonl").read_text().splitlines()]
    hs_train = [json.loads(x) for x in (other / "hellaswag" / "hellaswag_val.jsonl").read_text().splitlines()]
    hs_train = hs_train[:5] + hs_val[:3] + hs_train[5:]
    (ours / "hellaswag").mkdir()
    files["hellaswag"] = (_jsonl(hs_train, ours / "hellaswag" / "hellaswag_train.jsonl"),
                          _jsonl(hs_val, ours / "hellaswag" / "hellaswag_val.jsonl"))
    return ours, files


@pytest.mark.parametrize("name", SUITE)
def test_fewshot_prompts_equal_lm_evals(name: str, fewshot_data: tuple[Path, dict[str, tuple[Path, Path]]],
                                        tmp_path: Path) -> None:
    """k = 1 and 5 at two seeds: every request's context and continuation equal the ones lm-eval builds."""
    from harness.registry import make_tasks
    from harness.task import TaskConfig

    data_dir, files = fewshot_data
    task = lm_eval_fewshot_tasks({name: files[name]}, tmp_path / "yaml")[name]
    limit = 30 if name == "hellaswag" else 60
    drawn_self = 0
    for k in (1, 5):
        for seed in (1234, 7):
            theirs = lm_eval_contexts(task, k, seed, limit)
            ours = our_contexts(name, data_dir, k, seed, limit)
            assert len(ours) == len(theirs) == limit
            for i, (a, b) in enumerate(zip(ours, theirs)):
                assert a == b, (name, k, seed, i)
            heads = {a[0][0].rsplit("\n\n", 1)[0] for a in ours}
            assert len(heads) > limit // 2, "exemplars differ from row to row"  # one draw per doc, not one per run
            if name == "hellaswag":  # rows 5-7 of the train file are docs 0-2: how often lm-eval's k + 1 draw held them
                rnd = random.Random(seed)
                drawn_self += sum(5 + i in rnd.sample(range(33), k + 1) for i in range(3))
    if name == "hellaswag":
        assert drawn_self > 0
        [t] = make_tasks(name, TaskConfig(data_dir=data_dir, num_fewshot=5, seed=1234))
        for d in t.docs()[:3]:
            assert all(t.fewshot_key(x) != t.fewshot_key(d) for x in t.shots(d)) and len(t.shots(d)) == 5
