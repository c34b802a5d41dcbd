"""E2E metrics against the official E2E scorer's own numbers (tuetschek/e2e-metrics, measure_scores.py).

How the expected values were produced (once, 2026-11-25, outside the repository, in /tmp): the official scorer's
measure_scores.py (text of the HanGuo97/e2e-metrics fork, identical to upstream's), its mteval/mteval-v13a-sig.pl run
with Perl 5.36 (the default, non `--python` path), and its pycocoevalcap/eval.py (METEOR, ROUGE_L, CIDEr after the
Stanford PTBTokenizer) on top of pycocoevalcap 1.2's tokenizer/meteor/rouge/cider modules and jars, Java 17. Command:
`python measure_scores.py REFS HYPS`; the values below are its printout, with the full-precision values it computed
(a print added next to its `%.4f` ones). None of that code is in this repository.

Input sets:
- EXAMPLE: ../shared/data/e2e/e2e-metrics-example-inputs/devel-conc.txt vs baseline-output.txt (10 MRs, the scorer's
  own example).
- TEMPLATE: ../shared/data/e2e/e2e-dataset/testset_w_refs.csv (630 MRs) vs tests/e2e_systems.py:template_output of
  each MR in file order, one per line.
- LORA_REF: the same CSV vs the first reference of each MR group of ../shared/data/e2e/lora-e2e/test.txt (its text
  after `||`, pre-tokenized LoRA style).
- EMPTY: the EXAMPLE files with hypothesis 3 replaced by an empty line and hypothesis 7 by `...` (nothing left
  after tokenization), as tiny models produce.
- EDGE: tests/data/e2e_edge/refs.txt vs hyps.txt (this project's own 5 MRs: `0` tokens, which mteval's Perl treats as
  false in its NIST information weights, £, quotes, brackets, a one-reference group, a one-word hypothesis).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_systems import template_output

from harness.errors import HarnessError
from harness.metrics import nlg
from harness.score_cli import read_e2e_hyps, read_e2e_refs

HERE = Path(__file__).parent
HAVE_JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(not HAVE_JAVA, reason="METEOR and the Stanford tokenizer check need Java")

# measure_scores.py's printout (%.4f) and its full-precision values
EXAMPLE = {"BLEU": 0.720292849432, "NIST": 7.821151927456, "METEOR": 0.4800716745732023,
           "ROUGE_L": 0.7909526131515365, "CIDEr": 2.303943135258847}
EXAMPLE_PRINTED = {"BLEU": 0.7203, "NIST": 7.8212, "METEOR": 0.4801, "ROUGE_L": 0.7910, "CIDEr": 2.3039}
TEMPLATE = {"BLEU": 0.507864815435, "NIST": 7.337494384549, "METEOR": 0.4061958865651994,
            "ROUGE_L": 0.6265391471637719, "CIDEr": 1.8972233035269956}
TEMPLATE_PRINTED = {"BLEU": 0.5079, "NIST": 7.3375, "METEOR": 0.4062, "ROUGE_L": 0.6265, "CIDEr": 1.8972}
LORA_REF = {"BLEU": 0.92499116548, "NIST": 13.219879943887, "METEOR": 0.9002324846807295,
            "ROUGE_L": 0.9828539120979675, "CIDEr": 3.2742154435123174}
LORA_REF_PRINTED = {"BLEU": 0.9250, "NIST": 13.2199, "METEOR": 0.9002, "ROUGE_L": 0.9829, "CIDEr": 3.2742}
EMPTY = {"BLEU": 0.647334209652, "NIST": 7.123528415662, "METEOR": 0.4130011500075961,
         "ROUGE_L": 0.6169465971536875, "CIDEr": 1.8618423909318587}
EDGE = {"BLEU": 0.396789545323, "NIST": 2.950920855282, "METEOR": 0.3727304993927794,
        "ROUGE_L": 0.6598877132368818, "CIDEr": 4.1177323556867815}


def assert_official(ours: dict[str, float], full: dict[str, float], printed: dict[str, float] | None = None) -> None:
    for m, v in ours.items():
        assert abs(v - full[m]) < 1e-9, (m, v, full[m])  # mteval prints 12 digits; coco values are raw floats
        if printed:
            assert f"{v:.4f}" == f"{printed[m]:.4f}", m  # digit for digit as measure_scores.py prints it


@pytest.fixture(scope="module")
def e2e(shared_data: Path) -> Path:
    return shared_data / "e2e"


@pytest.fixture(scope="module")
def paraphrase_cache(e2e: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cache dir, table): METEOR's paraphrase table filtered by its FilterParaphrase to the references of every
    parity set at once. The official scorer loads the full table, so equal numbers show the filter changes nothing."""
    if not HAVE_JAVA:
        pytest.skip("METEOR needs Java")
    refs = [r for f in (e2e / "e2e-metrics-example-inputs" / "devel-conc.txt", e2e / "e2e-dataset" / "testset_w_refs.csv",
                        HERE / "data" / "e2e_edge" / "refs.txt") for g in read_e2e_refs(f)[0] for r in g]
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE_DIR", str(cache))
    try:
        return cache, nlg.ParaphraseFilter([nlg.coco_tokenize(r) for r in refs]).result()
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def meteor_jvm(paraphrase_cache: tuple[Path, Path]):  # noqa: ANN201 - one METEOR JVM for every parity set
    with nlg.Meteor(paraphrases=paraphrase_cache[1]) as m:
        yield m


def _lora_first_refs(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [next(g).split("||", 1)[1].strip() for _, g in itertools.groupby(lines, key=lambda ln: ln.split("||")[0])]


def test_example_inputs_all_metrics_match_official(e2e: Path, paraphrase_cache: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path (its own METEOR process); the cached table for a superset of references is reused."""
    refs, _ = read_e2e_refs(e2e / "e2e-metrics-example-inputs" / "devel-conc.txt")
    hyps, _ = read_e2e_hyps(e2e / "e2e-metrics-example-inputs" / "baseline-output.txt")
    assert len(refs) == len(hyps) == 10
    cache, table = paraphrase_cache
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    before = sorted((cache / "meteor-paraphrase").iterdir())
    assert_official(nlg.e2e_metrics(refs, hyps), EXAMPLE, EXAMPLE_PRINTED)
    assert sorted((cache / "meteor-paraphrase").iterdir()) == before  # not filtered again
    assert nlg.ParaphraseFilter([nlg.coco_tokenize(r) for g in refs for r in g]).path == table


def test_empty_hypotheses_match_official(e2e: Path, meteor_jvm: nlg.Meteor) -> None:
    refs, _ = read_e2e_refs(e2e / "e2e-metrics-example-inputs" / "devel-conc.txt")
    hyps, _ = read_e2e_hyps(e2e / "e2e-metrics-example-inputs" / "baseline-output.txt")
    hyps[2], hyps[6] = "", "..."
    assert_official(nlg.e2e_metrics(refs, hyps, meteor_runner=meteor_jvm), EMPTY)


def test_full_testset_template_system_matches_official(e2e: Path, meteor_jvm: nlg.Meteor) -> None:
    refs, mrs = read_e2e_refs(e2e / "e2e-dataset" / "testset_w_refs.csv")
    assert len(refs) == 630 and sum(map(len, refs)) == 4693
    hyps = [template_output(mr) for mr in mrs]
    assert_official(nlg.e2e_metrics(refs, hyps, meteor_runner=meteor_jvm), TEMPLATE, TEMPLATE_PRINTED)


def test_full_testset_lora_references_match_official_without_java(e2e: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refs, _ = read_e2e_refs(e2e / "e2e-dataset" / "testset_w_refs.csv")
    hyps = _lora_first_refs(e2e / "lora-e2e" / "test.txt")
    with monkeypatch.context() as m:
        m.setenv("PATH", "/nonexistent")  # BLEU, NIST, ROUGE_L, CIDEr need neither Java nor Perl
        ours = nlg.e2e_metrics(refs, hyps, with_meteor=False)
    assert set(ours) == {"BLEU", "NIST", "ROUGE_L", "CIDEr"}
    assert_official(ours, LORA_REF, LORA_REF_PRINTED)


def test_full_testset_lora_references_meteor_matches_official(e2e: Path, meteor_jvm: nlg.Meteor) -> None:
    refs, _ = read_e2e_refs(e2e / "e2e-dataset" / "testset_w_refs.csv")
    hyps = _lora_first_refs(e2e / "lora-e2e" / "test.txt")
    score, _ = meteor_jvm.score([nlg.coco_tokenize(h) for h in hyps], [[nlg.coco_tokenize(r) for r in g] for g in refs])
    assert_official({"METEOR": score}, LORA_REF, LORA_REF_PRINTED)


def test_edge_cases_match_official(meteor_jvm: nlg.Meteor) -> None:
    refs, _ = read_e2e_refs(HERE / "data" / "e2e_edge" / "refs.txt")
    hyps, _ = read_e2e_hyps(HERE / "data" / "e2e_edge" / "hyps.txt")
    assert [len(g) for g in refs] == [3, 2, 1, 3, 2]
    assert_official(nlg.e2e_metrics(refs, hyps, meteor_runner=meteor_jvm), EDGE)


@needs_java
def test_ptb_tokenizer_matches_stanford_jar_on_every_e2e_reference(e2e: Path, shared_data: Path, tmp_path: Path) -> None:
    """coco-caption runs the Stanford PTBTokenizer jar; ours is Python. Same tokens on all E2E dev + test references
    (and nearly all of 10,570 SQuAD questions, as a check on English far from E2E's)."""
    import csv
    import json

    texts = [r["ref"] for f in ("devset.csv", "testset_w_refs.csv")
             for r in csv.DictReader((e2e / "e2e-dataset" / f).open(encoding="utf-8"))]
    texts += _lora_first_refs(e2e / "lora-e2e" / "test.txt")
    texts += (HERE / "data" / "e2e_edge" / "refs.txt").read_text(encoding="utf-8").split("\n")
    squad = json.loads((shared_data / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    questions = [qa["question"] for a in squad for p in a["paragraphs"] for qa in p["qas"]]
    src = tmp_path / "lines.txt"
    src.write_text("\n".join(t.replace("\n", " ") for t in texts + questions), encoding="utf-8")
    jar = nlg.meteor_jar().parent.parent / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    out = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                          "-lowerCase", str(src)], capture_output=True, text=True, encoding="utf-8", check=True).stdout
    jar_lines = out.split("\n")
    assert len(texts) > 10000 and len(questions) == 10570
    ours = [" ".join(nlg.ptb_tokenize(t)) for t in texts + questions]
    bad = [(t, j) for t, o, j in zip(texts + questions, ours, jar_lines) if o != j.rstrip()]
    assert [b for b in bad if b[0] in texts] == []
    assert len(bad) <= 10, bad[:5]  # 4 at the time of writing: `Qur'an`, `sant'`-style apostrophes, ...


def test_mteval_tokenization_rules() -> None:
    # mteval-v13a: punctuation split except '.'/',' between digits and '-' inside words; apostrophes untouched
    assert nlg.mteval_tokenize("Café Rouge's £20-25, 3.5 rating; kid-friendly &amp; (fun).") == [
        "café", "rouge's", "£20", "-", "25", ",", "3.5", "rating", ";", "kid-friendly", "&", "(", "fun", ")", "."]
    assert nlg.mteval_tokenize("   ") == []


def test_bootstrap_stderr_is_small_positive_and_reproducible(e2e: Path) -> None:
    refs, mrs = read_e2e_refs(e2e / "e2e-dataset" / "testset_w_refs.csv")
    scores = nlg.E2EScores(refs[:120], [template_output(m) for m in mrs[:120]], with_meteor=False)
    se = scores.bootstrap_stderr(iters=100, seed=1)
    assert se == scores.bootstrap_stderr(iters=100, seed=1)
    for m in ("BLEU", "NIST", "ROUGE_L", "CIDEr"):
        assert 0 < se[m] < 0.2 * scores.values()[m], m


def test_missing_java_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nlg.shutil, "which", lambda name: None)
    with pytest.raises(HarnessError) as e:
        nlg.e2e_metrics([["a b c"]], ["a b"])
    assert "--skip-meteor" in str(e.value) and "\n" not in str(e.value)
    assert set(nlg.e2e_metrics([["a b c"], ["d e"]], ["a b", "d e"], with_meteor=False)) == {
        "BLEU", "NIST", "ROUGE_L", "CIDEr"}


def test_mismatched_lengths_and_empty_groups_are_errors() -> None:
    with pytest.raises(HarnessError, match="2 hypotheses for 1 reference groups"):
        nlg.E2EScores([["a"]], ["a", "b"], with_meteor=False)
    with pytest.raises(HarnessError, match="segment 2 has no references"):
        nlg.E2EScores([["a"], []], ["a", "b"], with_meteor=False)
