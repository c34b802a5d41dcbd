"""Paired tests of adapter vs base: McNemar exact equals scipy's binomial test (and statsmodels' exact McNemar
formula); the paired bootstrap draws exactly scipy.stats.bootstrap's resamples; the leaderboard's --significance
column is that test on the runs' per-sample scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main
from scipy.stats import binom, binomtest, bootstrap

from harness.reports.significance import (
    ITERS,
    SEED,
    batch_size,
    bootstrap_changes,
    bootstrap_p_value,
    marker,
    paired_bootstrap,
    paired_test,
)


def _binary(n: int, p_base: float, p_adapter: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random(n) < p_base).astype(float), (rng.random(n) < p_adapter).astype(float)


@pytest.mark.parametrize(("n", "pb", "pa", "seed"), [(40, 0.5, 0.5, 0), (200, 0.3, 0.45, 1), (1000, 0.6, 0.58, 2),
                                                      (25, 0.2, 0.9, 3)])
def test_mcnemar_equals_scipy_binomial_test(n: int, pb: float, pa: float, seed: int) -> None:
    b, a = _binary(n, pb, pa, seed)
    got = paired_test(b, a)
    assert got is not None and got.test == "mcnemar-exact"
    gained, lost = int(((b == 0) & (a == 1)).sum()), int(((b == 1) & (a == 0)).sum())
    assert (got.gained, got.lost) == (gained, lost)
    assert got.p_value == binomtest(gained, gained + lost, 0.5, alternative="two-sided").pvalue
    # statsmodels' mcnemar(exact=True): min(1, 2 * Binom(b + c, 1/2).cdf(min(b, c)))
    assert got.p_value == pytest.approx(min(1.0, 2 * binom.cdf(min(gained, lost), gained + lost, 0.5)), rel=1e-12)
    assert got.change == pytest.approx(a.mean() - b.mean())


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    b = np.array([1.0, 0.0, 1.0, 1.0])
    got = paired_test(b, b.copy())
    assert got is not None and got.p_value == 1.0 and got.gained == got.lost == 0


def _scipy_bootstrap(b: np.ndarray, a: np.ndarray, iters: int, seed: int):  # noqa: ANN202 - scipy's BootstrapResult
    return bootstrap((b, a), lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis), paired=True, vectorized=True,
                     n_resamples=iters, batch=batch_size(len(b), iters), method="percentile",
                     rng=np.random.default_rng(seed))


@pytest.mark.parametrize(("n", "iters"), [(60, ITERS), (3000, 1500)])  # 3000 docs: several batches of resamples
def test_paired_bootstrap_is_scipy_bootstrap(n: int, iters: int) -> None:
    rng = np.random.default_rng(7)
    b = rng.random(n)  # F1-like scores in [0, 1]
    a = np.clip(b + rng.normal(0.03, 0.2, n), 0, 1)
    ref = _scipy_bootstrap(b, a, iters, SEED)
    ours = bootstrap_changes(b, a, iters, SEED)
    np.testing.assert_array_equal(ours, ref.bootstrap_distribution)  # the same resamples, the same arithmetic
    got = paired_bootstrap(b, a, iters, SEED)
    assert got.test == "paired-bootstrap"
    assert got.ci95 == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert got.p_value == bootstrap_p_value(ref.bootstrap_distribution, float(a.mean() - b.mean()))
    assert 0.0 <= got.p_value <= 1.0


def test_bootstrap_is_seeded_and_detects_a_real_change() -> None:
    rng = np.random.default_rng(3)
    b = rng.random(300)
    shifted = b + 0.2
    assert paired_bootstrap(b, shifted, seed=5) == paired_bootstrap(b, shifted, seed=5)
    other = b + rng.normal(0, 0.1, 300)
    assert not np.array_equal(bootstrap_changes(b, other, seed=1), bootstrap_changes(b, other, seed=2))
    assert paired_bootstrap(b, shifted).p_value < 0.001
    assert paired_bootstrap(b, b + rng.normal(0, 0.05, 300)).p_value > 0.05


def test_forgetting_report_gives_the_same_p_values() -> None:
    """The forgetting report and the leaderboard test the same pair of vectors the same way."""
    from harness.forgetting import paired_comparison

    b, a = _binary(150, 0.4, 0.55, 9)
    assert paired_comparison(list(b), list(a))[0]["p_value"] == paired_test(b, a).p_value  # type: ignore[union-attr]
    rng = np.random.default_rng(4)
    x = rng.random(80)
    y = np.clip(x + rng.normal(0.05, 0.1, 80), 0, 1)
    assert paired_comparison(list(x), list(y))[0]["p_value"] == paired_test(x, y).p_value  # type: ignore[union-attr]


def test_missing_scores_are_left_out_and_markers() -> None:
    got = paired_test([1.0, float("nan"), 0.0, 1.0], [1.0, 1.0, 1.0, float("nan")])
    assert got is not None and got.n == 2 and got.gained == 1
    assert paired_test([float("nan")], [1.0]) is None
    assert [marker(p) for p in (0.2, 0.049, 0.009, 0.0009, None)] == ["", "*", "**", "***", ""]


# --- the leaderboard column, from run directories written by the harness's own writer -------------------------


def _run(root: Path, label: str, adapter: str | None, samples: list[dict], created: str) -> Path:
    from harness.evaluate import write_run_dir
    from harness.results import header

    n = len(samples)
    mean = {m: float(np.mean([s["metrics"][m] for s in samples])) for m in samples[0]["metrics"]}
    model = {"base": "/models/tiny", "base_hash": "abc", "quantization": None, "dtype": "float32", "kind": "causal"}
    if adapter:
        model.update(adapter=adapter, adapter_path=f"/adapters/{adapter}", adapter_hash=adapter * 4)
    metrics = {m: {"value": v, "stderr": 0.01} for m, v in mean.items()}
    metrics["corpus_bleu"] = {"value": 0.3, "stderr": 0.02}  # no per-sample values: no paired test
    results = {**header(), "created": created, "label": label, "model": model,
               "tasks": {"qa": {"n": n, "metrics": metrics, "higher_is_better": True}}}
    return write_run_dir(root / label, results, {"qa": samples})


def test_leaderboard_significance_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    b, a = _binary(120, 0.3, 0.6, 21)
    rng = np.random.default_rng(5)
    fb = rng.random(120)
    fa = np.clip(fb + 0.1, 0, 1)
    base = [{"doc_id": str(i), "metrics": {"em": b[i], "f1": fb[i]}} for i in range(120)]
    adapter = [{"doc_id": str(i), "metrics": {"em": a[i], "f1": fa[i]}} for i in range(120)]
    adapter = adapter[::-1]  # paired by doc id, not by line
    _run(tmp_path, "base", None, base, "2026-01-01T00:00:00")
    _run(tmp_path, "lora", "lora", adapter, "2026-01-01T00:00:01")
    code, out, err = run_main(monkeypatch, capsys, "leaderboard", str(tmp_path), "--significance", "--format", "json")
    assert code == 0, err
    row = json.loads(out)["rows"][1]
    em = row["cells"]["qa/em"]["significance"]
    ref = binomtest(int(((b == 0) & (a == 1)).sum()), int((b != a).sum()), 0.5).pvalue
    assert em["test"] == "mcnemar-exact" and em["p_value"] == ref and em["n"] == 120
    f1 = row["cells"]["qa/f1"]["significance"]
    assert f1["test"] == "paired-bootstrap" and f1["p_value"] == paired_bootstrap(fb, fa).p_value
    assert row["cells"]["qa/corpus_bleu"]["significance"] is None
    code, md, err = run_main(monkeypatch, capsys, "leaderboard", str(tmp_path), "--significance")
    assert code == 0, err
    line = next(x for x in md.splitlines() if x.startswith("| tiny + lora"))
    assert f"({100 * (a.mean() - b.mean()):+.1f}){marker(ref)} |" in line and "(no per-sample scores)" in line
    assert "McNemar exact" in md
    code, plain, _ = run_main(monkeypatch, capsys, "leaderboard", str(tmp_path))
    assert code == 0 and "*" not in plain.split("## ")[0].split("Values are")[0]  # without the flag: no markers
    code, csv_text, _ = run_main(monkeypatch, capsys, "leaderboard", str(tmp_path), "--significance", "--format", "csv")
    assert code == 0 and "qa/em p" in csv_text.splitlines()[0] and str(ref)[:8] in csv_text
