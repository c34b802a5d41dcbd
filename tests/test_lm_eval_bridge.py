"""`lm-eval:<task>`: lm-eval's own tasks (local YAMLs) answered through our loading, scored by lm-eval's functions.

Checked against lm-eval 0.4.13's simple_evaluate with its HFLM on the same weights (and lm-eval's own PEFT
loading for the adapter): same per-doc metrics, same group aggregate, same filtered generations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lm_eval
import pytest

LM_TASKS = Path(lm_eval.__file__).parent / "tasks"


def _write_yamls(root: Path, suite: Path, gsm8k: Path) -> Path:
    rows = [json.loads(x) for x in (suite / "arc" / "ARC-Easy-Test.jsonl").read_text().splitlines() if x.strip()]
    flat = root / "arc.jsonl"
    flat.write_text("".join(json.dumps({"id": r["id"], "question": r["question"]["stem"], "answerKey": r["answerKey"],
                                        "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                                                    "label": [c["label"] for c in r["question"]["choices"]]}}) + "\n"
                            for r in rows))
    wrows = [json.loads(x) for x in (suite / "winogrande" / "dev.jsonl").read_text().splitlines() if x.strip()]
    labels = (suite / "winogrande" / "dev-labels.lst").read_text().split()
    wino = root / "wino.jsonl"
    wino.write_text("".join(json.dumps({**r, "answer": a}) + "\n" for r, a in zip(wrows, labels)))
    y = root / "yaml"
    y.mkdir()
    (y / "tiny_arc.yaml").write_text(
        f"include: {LM_TASKS / 'arc/arc_easy.yaml'}\ntag: []\ntask: tiny_arc\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {flat}\ntraining_split: null\nvalidation_split: null\n")
    (y / "tiny_wino.yaml").write_text(
        f"include: {LM_TASKS / 'winogrande/default.yaml'}\ntask: tiny_wino\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {wino}\ntraining_split: null\n")
    (y / "tiny_group.yaml").write_text(
        "group: tiny_group\ntask:\n  - tiny_arc\n  - tiny_wino\naggregate_metric_list:\n  - metric: acc\n"
        "    weight_by_size: true\nmetadata:\n  version: 1.0\n")
    (y / "tiny_gen.yaml").write_text(f"""task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {gsm8k / 'gsm8k' / 'test.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer.split('####')[-1].strip()}}}}"
generation_kwargs:
  until: ["\\n\\n", "Question:"]
  do_sample: false
  max_gen_toks: 24
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: take_first
  - name: flexible
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    return y


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path, gsm8k_data: Path) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.testing.suite import write_suite_data

    root = tmp_path_factory.mktemp("bridge")
    suite = write_suite_data(root / "data", n=12)
    yaml_dir = _write_yamls(root, suite, gsm8k_data)
    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2),
                          LoraConfig(r=4, lora_alpha=32, target_modules=["c_attn"], init_lora_weights=False))
    adapter = root / "adapter"
    peft.save_pretrained(adapter)
    return {"yaml": yaml_dir, "adapter": adapter, "model": tiny_gpt2}


def _lm_eval(model: Path, tasks: list[str], yaml_dir: Path, peft: Path | None = None, limit: int | None = None,
             batch_size: int = 8) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model), peft=str(peft) if peft else None, batch_size=batch_size, device="cpu",
              dtype="float32")
    return simple_evaluate(model=lm, tasks=tasks, log_samples=True, limit=limit,
                           task_manager=TaskManager(include_path=str(yaml_dir), include_defaults=False))


def _ours(model: Path, task: str, yaml_dir: Path, out: Path, adapters: list[Path] | None = None, batch_size: int = 8,
          limit: int | None = None) -> list[dict[str, Any]]:
    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec
    from harness.results import read_results
    from harness.task import TaskConfig

    spec = RunSpec(model=ModelSpec(model=str(model), adapters=[str(a) for a in adapters or []], with_base=True,
                                   batch_size=batch_size),
                   tasks=[task], task_cfg=TaskConfig(limit=limit, options={"include_path": str(yaml_dir)}),
                   output_dir=out, quiet=True)
    return [read_results(p) | {"dir": p.parent} for p in run(spec)]


def test_group_through_our_loading_matches_lm_eval_for_base_and_adapter(setup: dict[str, Any], tmp_path: Path) -> None:
    base_res, ad_res = _ours(setup["model"], "lm-eval:tiny_group", setup["yaml"], tmp_path, [setup["adapter"]])
    ref_base = _lm_eval(setup["model"], ["tiny_group"], setup["yaml"])
    ref_ad = _lm_eval(setup["model"], ["tiny_group"], setup["yaml"], peft=setup["adapter"])
    for ours, ref in ((base_res, ref_base), (ad_res, ref_ad)):
        entry = ours["tasks"]["lm-eval:tiny_group"]
        assert entry["n"] == 24
        assert entry["metrics"]["acc"]["value"] == pytest.approx(ref["results"]["tiny_group"]["acc,none"], abs=1e-12)
        for sub in ("tiny_arc", "tiny_wino"):
            assert entry["details"]["subtasks"][sub]["acc"]["value"] == pytest.approx(ref["results"][sub]["acc,none"])
            assert entry["details"]["subtasks"][sub]["acc"]["stderr"] == pytest.approx(
                ref["results"][sub]["acc_stderr,none"])
        samples = [json.loads(x) for x in (ours["dir"] / "samples" / "lm-eval:tiny_group.jsonl").read_text().splitlines()]
        for s in samples:
            ref_s = next(r for r in ref["samples"][s["task"]] if r["doc_id"] == int(s["doc_id"].split("/")[1]))
            assert [tuple(a) for a in s["arguments"]] == [tuple(a) for a in ref_s["arguments"]]
            assert [r[0] for r in s["resps"]] == pytest.approx([float(r[0][0]) for r in ref_s["resps"]], abs=1e-4)
            assert s["metrics"]["acc"] == ref_s["acc"]
    lls = [[json.loads(x)["resps"] for x in (r["dir"] / "samples" / "lm-eval:tiny_group.jsonl").read_text().splitlines()]
           for r in (base_res, ad_res)]
    assert lls[0] != lls[1]  # the adapter was applied (and lm-eval's PEFT loading agrees on its numbers)


def test_generate_task_uses_lm_eval_filters(setup: dict[str, Any], tmp_path: Path) -> None:
    [ours] = _ours(setup["model"], "lm-eval:tiny_gen", setup["yaml"], tmp_path, batch_size=1, limit=6)
    ref = _lm_eval(setup["model"], ["tiny_gen"], setup["yaml"], limit=6, batch_size=1)
    entry = ours["tasks"]["lm-eval:tiny_gen"]
    for key, name in (("exact_match,strict", "exact_match_strict"), ("exact_match,flexible", "exact_match_flexible")):
        assert entry["metrics"][name]["value"] == pytest.approx(ref["results"]["tiny_gen"][key])
    samples = [json.loads(x) for x in (ours["dir"] / "samples" / "lm-eval:tiny_gen.jsonl").read_text().splitlines()]
    ref_by_filter = {(r["doc_id"], r["filter"]): r for r in ref["samples"]["tiny_gen"]}
    for s in samples:
        doc_id = int(s["doc_id"].split("/")[1])
        assert s["resps"][0][0] == ref_by_filter[(doc_id, "strict")]["resps"][0][0]
        for f in ("strict", "flexible"):
            assert s["filtered_resps"][f] == ref_by_filter[(doc_id, f)]["filtered_resps"]


def test_offline_hub_task_and_unknown_task_are_one_line_errors() -> None:
    from harness.errors import HarnessError
    from harness.registry import make_tasks
    from harness.task import TaskConfig

    for name, msg in (("lm-eval:arc_easy", "lm-eval task arc_easy: could not load its data"),
                      ("lm-eval:no_such_task_xyz", "not a task, group or tag lm-eval knows")):
        [task] = make_tasks(name, TaskConfig())
        with pytest.raises(HarnessError) as e:
            task.docs()
        assert msg in str(e.value) and "\n" not in str(e.value)


def _sampling_yaml(root: Path, gsm8k: Path, data_file: Path | None = None) -> Path:
    """A generate_until task whose YAML samples (do_sample, temperature 0.8, top_p 0.95) three times per doc."""
    y = root / "yaml_sampling"
    y.mkdir(exist_ok=True)
    (y / "tiny_sampled.yaml").write_text(f"""task: tiny_sampled
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file or gsm8k / 'gsm8k' / 'test.jsonl'}
test_split: test
output_type: generate_until
repeats: 3
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer.split('####')[-1].strip()}}}}"
generation_kwargs:
  until: ["Question:"]
  do_sample: true
  temperature: 0.8
  top_p: 0.95
  max_gen_toks: 5
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
""")
    return y


@pytest.mark.parametrize(("given", "expect"), [
    ({}, (0.8, 0.95, 3, 5)),  # the YAML's own settings
    ({"temperature": 0.0}, (0.0, 0.95, 3, 5)),  # --temperature 0: greedy, though it is the flag's default value
    ({"samples": 1}, (0.8, 0.95, 1, 5)),  # --samples 1 over the YAML's repeats
    ({"top_p": 1.0, "max_new_tokens": 2}, (0.8, 1.0, 3, 2)),
    ({"temperature": 0.5, "samples": 2}, (0.5, 0.95, 2, 5)),
])
def test_explicit_sampling_flags_win_over_the_yaml_even_at_their_defaults(given: dict[str, Any], expect: tuple,
                                                                           gsm8k_data: Path, tmp_path: Path) -> None:
    from harness.requests import Generate
    from harness.task import TaskConfig
    from tasks.lm_eval_bridge import LmEvalTask

    y = _sampling_yaml(tmp_path, gsm8k_data)
    cfg = TaskConfig(**given, options={"include_path": str(y)}, given=frozenset(given))
    task = LmEvalTask(cfg, "tiny_sampled")
    for d in task.docs()[:2]:
        [g] = task.requests(d)
        assert isinstance(g, Generate)
        assert (g.temperature, g.top_p, g.n, g.max_new_tokens) == expect
        assert g.seed == cfg.seed and g.stop == ("Question:",)


def test_explicit_flags_through_the_cli_are_what_results_record(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import run_main

    from harness.results import read_results

    y = _sampling_yaml(tmp_path, gsm8k_data)
    base = ["run", "-m", str(tiny_gpt2), "-t", "lm-eval:tiny_sampled", "--task-option", f"include_path={y}",
            "--limit", "2", "-o", str(tmp_path / "out"), "-q"]
    code, _, err = run_main(monkeypatch, capsys, *base, "--run-name", "yaml")
    assert code == 0, err
    code, _, err = run_main(monkeypatch, capsys, *base, "--run-name", "flags", "--temperature", "0", "--samples", "1")
    assert code == 0, err
    used = {name: read_results(tmp_path / "out" / name / "results.json")["tasks"]["lm-eval:tiny_sampled"]["generation"]
            for name in ("yaml", "flags")}
    assert (used["yaml"]["temperature"], used["yaml"]["top_p"], used["yaml"]["n"]) == (0.8, 0.95, 3)
    assert (used["flags"]["temperature"], used["flags"]["n"]) == (0.0, 1)


def test_only_data_errors_become_could_not_load_its_data(gsm8k_data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import HarnessError
    from harness.task import TaskConfig
    from tasks.lm_eval_bridge import LmEvalTask

    y = _sampling_yaml(tmp_path, gsm8k_data, data_file=tmp_path / "missing.jsonl")
    with pytest.raises(HarnessError) as e:  # a data file that is not there: one line
        LmEvalTask(TaskConfig(options={"include_path": str(y)}), "tiny_sampled").docs()
    assert "lm-eval task tiny_sampled: could not load its data" in str(e.value) and "\n" not in str(e.value)

    def bug(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("a bug, not a data problem")

    monkeypatch.setattr(lm_eval.tasks, "get_task_dict", bug)
    with pytest.raises(ZeroDivisionError):  # not disguised as a data error
        LmEvalTask(TaskConfig(options={"include_path": str(y)}), "tiny_sampled").docs()
