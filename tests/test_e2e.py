"""The E2E task (data sources, grouping, prompts, training examples), `harness run` on a tiny model, `harness score e2e`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_main

from harness.errors import HarnessError
from harness.metrics import nlg
from harness.results import read_results
from harness.task import TaskConfig
from tasks.e2e import DEFAULT_PROMPT, E2E, lora_mr

SMALL = [  # this project's own rows: 3 MRs, one with a reference that the official reader strips a quote from
    ("name[Aromi], eatType[coffee shop], area[city centre]", "Aromi is a coffee shop in the city centre."),
    ("name[Aromi], eatType[coffee shop], area[city centre]", "In the city centre there is a coffee shop, Aromi."),
    ("name[The Punter], food[French], priceRange[cheap]", "'The Punter' serves cheap French food."),
    ("name[Zizzi], eatType[pub], near[Café Rouge]", "Zizzi is a pub near Café Rouge."),
    ("name[Zizzi], eatType[pub], near[Café Rouge]", "Near Café Rouge is a pub called Zizzi."),
]


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = '"mr","ref"') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f'"{m}","{r}"\n' for m, r in rows), encoding="utf-8")
    return path




def test_official_csv_and_lora_files_give_the_same_630_meaning_representations(shared_data: Path) -> None:
    csv_task = E2E(TaskConfig(data_dir=shared_data / "e2e"))  # DIR/e2e-dataset/testset_w_refs.csv layout
    lora_task = E2E(TaskConfig(options={"data": str(shared_data / "e2e" / "lora-e2e" / "test.txt")}))
    a, b = csv_task.docs(), lora_task.docs()
    assert len(a) == len(b) == 630
    assert sum(len(d["refs"]) for d in a) == sum(len(d["refs"]) for d in b) == 4693
    assert [d["mr"] for d in a] == [d["mr"] for d in b]  # LoRA `name : X | Type : Y` mapped to the challenge form
    assert a[0]["mr"] == "name[Blue Spice], eatType[coffee shop], area[city centre]"
    assert a[0]["refs"][0] == "A coffee shop in the city centre area called Blue Spice."
    assert b[0]["refs"][0] == "A coffee shop in the city centre area called Blue Spice ."
    assert csv_task.source_description.endswith("e2e-dataset/testset_w_refs.csv")


def test_requests_carry_the_decoding_settings_and_train_examples_share_the_prompt(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "e2e" / "testset_w_refs.csv", SMALL)
    write_csv(tmp_path / "e2e" / "trainset.csv", SMALL)
    cfg = TaskConfig(data_dir=tmp_path, num_beams=10, length_penalty=0.8, no_repeat_ngram_size=4)
    task = E2E(cfg)
    docs = task.docs()
    assert [len(d["refs"]) for d in docs] == [2, 1, 2]
    assert docs[1]["refs"] == ["The Punter' serves cheap French food."]  # stripped as measure_scores.py does
    (req,) = task.requests(docs[0])
    assert (req.num_beams, req.length_penalty, req.no_repeat_ngram_size, req.max_new_tokens) == (10, 0.8, 4, 64)
    assert req.prompt == DEFAULT_PROMPT.format(mr=docs[0]["mr"]) and req.stop == ("\n",)
    train = task.train_examples("train")
    assert len(train) == 5 and train[0] == {"prompt": req.prompt, "target": " " + SMALL[0][1]}
    custom = E2E(TaskConfig(options={"data": str(data), "prompt": "MR: {mr}\\nText:"}))
    assert custom.requests(custom.docs()[0])[0].prompt == f"MR: {SMALL[0][0]}\nText:"
    both = E2E(TaskConfig(options={"data": "squad-dev.json", "e2e.data": str(data), "e2e.skip_meteor": "1"}))
    assert len(both.docs()) == 3  # `e2e.KEY=` wins over a KEY= meant for another task of the run


def test_bad_data_is_a_one_line_error(tmp_path: Path) -> None:
    empty_ref = write_csv(tmp_path / "bad.csv", [SMALL[0], ("name[Solo], eatType[pub]", "")])
    with pytest.raises(HarnessError, match=r"'name\[Solo\], eatType\[pub\]' has no references"):
        E2E(TaskConfig(options={"data": str(empty_ref)})).docs()
    with pytest.raises(HarnessError, match="none of e2e/testset_w_refs.csv"):
        E2E(TaskConfig(data_dir=tmp_path)).docs()
    bad_lora = tmp_path / "x.txt"
    bad_lora.write_text("name : A | colour : red||A is red.\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="x.txt:1: cannot parse meaning representation field 'colour : red'"):
        E2E(TaskConfig(options={"data": str(bad_lora)})).docs()
    assert lora_mr("name : A | Type : pub | price : cheap", "x") == "name[A], eatType[pub], priceRange[cheap]"


def test_java_is_checked_before_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_csv(tmp_path / "d.csv", SMALL)
    monkeypatch.setattr("tasks.e2e.shutil.which", lambda name: None)
    with pytest.raises(HarnessError, match="skip_meteor=1"):
        E2E(TaskConfig(options={"data": str(data)})).docs()
    assert len(E2E(TaskConfig(options={"data": str(data), "skip_meteor": "1"})).docs()) == 3


@pytest.mark.parametrize("layout", ["gem", "e2e_nlg"])
def test_hub_rows_are_grouped_once_per_mr(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two hub layouts (offline here, so their row shapes are fed in): GEM lists every reference on every row."""
    groups = {SMALL[0][0]: [SMALL[0][1], SMALL[1][1]], SMALL[3][0]: [SMALL[3][1], SMALL[4][1]]}
    if layout == "gem":
        rows = [{"meaning_representation": mr, "target": ref, "references": refs}
                for mr, refs in groups.items() for ref in refs]
    else:
        rows = [{"meaning_representation": mr, "human_reference": ref} for mr, refs in groups.items() for ref in refs]
    seen = []

    def fake_load_hub(path: str, name: str | None, split: str, hint: str) -> list[dict]:
        seen.append(path)
        if layout == "e2e_nlg" and path == "GEM/e2e_nlg":
            raise HarnessError("could not load dataset GEM/e2e_nlg")
        return rows

    monkeypatch.setattr("tasks.e2e.load_hub", fake_load_hub)
    docs = E2E(TaskConfig(options={"skip_meteor": "1"})).docs()
    assert [(d["mr"], d["refs"]) for d in docs] == list(groups.items())
    assert seen == (["GEM/e2e_nlg"] if layout == "gem" else ["GEM/e2e_nlg", "e2e_nlg"])


def test_run_on_tiny_model_writes_corpus_metrics(tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "d" / "e2e" / "testset_w_refs.csv", SMALL)
    out = tmp_path / "results"
    code, stdout, err = run_main(monkeypatch, capsys, "run", "-m", str(tiny_gpt2), "-t", "e2e", "--data-dir",
                                str(tmp_path / "d"), "--limit", "3", "--max-new-tokens", "6", "--num-beams", "2",
                                "--no-repeat-ngram-size", "2", "--task-option", "skip_meteor=1",
                                "--task-option", "bootstrap_iters=20", "-o", str(out), "--run-name", "r", "-q")
    assert code == 0, err
    task = read_results(out / "r" / "results.json")["tasks"]["e2e"]
    assert task["n"] == 3 and set(task["metrics"]) == {"BLEU", "NIST", "ROUGE_L", "CIDEr"}
    assert "skipped" in task["details"]["meteor"]
    samples = [json.loads(x) for x in (out / "r" / "samples" / "e2e.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and "\n" not in samples[0]["output"]
    # the run's corpus numbers are exactly what the official metric code gives for its own outputs
    again = nlg.e2e_metrics([s["refs"] for s in samples], [s["output"] for s in samples], with_meteor=False)
    assert {m: v["value"] for m, v in task["metrics"].items()} == again
    # and `harness score e2e` on the samples file agrees too
    code, stdout, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(data),
                                "--hyps", str(out / "r" / "samples" / "e2e.jsonl"), "--skip-meteor")
    assert code == 0, err
    assert json.loads(stdout) == again


def test_score_cli_formats_and_errors(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ex = shared_data / "e2e" / "e2e-metrics-example-inputs"
    code, out, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(ex / "devel-conc.txt"),
                             "--hyps", str(ex / "baseline-output.txt"), "--skip-meteor", "--stderr")
    assert code == 0, err
    got = json.loads(out)
    # official measure_scores.py numbers for these files (see tests/test_nlg_metrics.py for how they were produced)
    assert f"{got['BLEU']:.4f}|{got['NIST']:.4f}|{got['ROUGE_L']:.4f}|{got['CIDEr']:.4f}" == "0.7203|7.8212|0.7910|2.3039"
    assert "METEOR" not in got and set(got["stderr"]) == {"BLEU", "NIST", "ROUGE_L", "CIDEr"}
    # TSV references with an MR column, hypotheses as CSV with MRs: same numbers as plain text
    refs_tsv = tmp_path / "refs.tsv"
    refs_tsv.write_text("mr\tref\n" + "".join(f"{m}\t{r}\n" for m, r in SMALL), encoding="utf-8")
    hyps_txt = tmp_path / "hyps.txt"
    hyps_txt.write_text("Aromi is a coffee shop.\nThe Punter is cheap.\nZizzi is a pub.\n", encoding="utf-8")
    hyps_csv = write_csv(tmp_path / "hyps.csv", [(SMALL[0][0], "Aromi is a coffee shop."),
                                                  (SMALL[2][0], "The Punter is cheap."), (SMALL[3][0], "Zizzi is a pub.")],
                         header='"mr","output"')
    a = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(refs_tsv), "--hyps", str(hyps_txt), "--skip-meteor")
    b = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(refs_tsv), "--hyps", str(hyps_csv), "--skip-meteor")
    assert a[0] == b[0] == 0 and json.loads(a[1]) == json.loads(b[1])
    # errors: one line naming the file
    short = tmp_path / "short.txt"
    short.write_text("one line\n", encoding="utf-8")
    code, _, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(refs_tsv), "--hyps", str(short),
                           "--skip-meteor")
    assert code == 2 and err.count("\n") == 1 and f"--hyps {short}: 1 hypotheses but --refs" in err
    no_refs = write_csv(tmp_path / "norefs.csv", [SMALL[0], ("name[Solo], eatType[pub]", "")])
    code, _, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(no_refs), "--hyps", str(short))
    assert code == 2 and err.count("\n") == 1 and "norefs.csv" in err and "has no references" in err
    swapped = write_csv(tmp_path / "swapped.csv", [(SMALL[2][0], "x"), (SMALL[0][0], "y"), (SMALL[3][0], "z")],
                        header='"mr","output"')
    code, _, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(refs_tsv), "--hyps", str(swapped),
                           "--skip-meteor")
    assert code == 2 and "hypothesis 1 is for MR" in err
    code, _, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(tmp_path / "nope.txt"), "--hyps", str(short))
    assert code == 2 and "nope.txt: file not found" in err


def test_missing_java_message_names_skip_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    refs = write_csv(tmp_path / "r.csv", SMALL)
    hyps = tmp_path / "h.txt"
    hyps.write_text("a\nb\nc\n", encoding="utf-8")
    monkeypatch.setattr(nlg.shutil, "which", lambda name: None)
    code, _, err = run_main(monkeypatch, capsys, "score", "e2e", "--refs", str(refs), "--hyps", str(hyps))
    assert code == 2 and err.count("\n") == 1 and "--skip-meteor" in err and "Java" in err
