"""Classification metrics against scikit-learn / SciPy, and the GLUE score against the published leaderboard."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from harness.metrics import classification as cm
from harness.metrics.stats import Metric


@pytest.fixture()
def binary() -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 300)
    p = np.where(rng.random(300) < 0.7, t, 1 - t)
    return t.tolist(), p.tolist()


def _slow_bootstrap(stat, a, b, iters=200, seed=7):  # noqa: ANN001, ANN202 - test helper
    """The same resamples as the vectorised code, scored one by one with the library function."""
    idx = np.random.default_rng(seed).integers(0, len(a), size=(iters, len(a)))
    a, b = np.asarray(a), np.asarray(b)
    return float(np.std([stat(a[i], b[i]) for i in idx], ddof=1))


def test_values_match_sklearn_and_scipy(binary: tuple[list[int], list[int]]) -> None:
    t, p = binary
    assert cm.f1(t, p).value == pytest.approx(f1_score(t, p))
    assert cm.mcc(t, p).value == pytest.approx(matthews_corrcoef(t, p))
    assert cm.accuracy(t, p).value == pytest.approx(np.mean(np.asarray(t) == np.asarray(p)))
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    y[:10] = y[0]  # ties, so Spearman's average ranks matter
    assert cm.pearson(x, y).value == pytest.approx(pearsonr(x, y)[0])
    assert cm.spearman(x, y).value == pytest.approx(spearmanr(x, y)[0])


def test_bootstrap_stderrs_equal_library_loop(binary: tuple[list[int], list[int]]) -> None:
    """The vectorised bootstrap computes exactly what a loop over sklearn/scipy would on the same resamples."""
    t, p = binary
    assert cm.f1(t, p, iters=200, seed=7).stderr == pytest.approx(
        _slow_bootstrap(lambda a, b: f1_score(a, b, zero_division=0), t, p))
    assert cm.mcc(t, p, iters=200, seed=7).stderr == pytest.approx(_slow_bootstrap(matthews_corrcoef, t, p))
    rng = np.random.default_rng(2)
    t3 = rng.integers(0, 3, 150)
    p3 = np.where(rng.random(150) < 0.6, t3, rng.integers(0, 3, 150))
    assert cm.mcc(t3, p3).value == pytest.approx(matthews_corrcoef(t3, p3))
    assert cm.mcc(t3, p3, iters=200, seed=7).stderr == pytest.approx(_slow_bootstrap(matthews_corrcoef, t3, p3))
    x = rng.normal(size=80)
    y = np.round(x + rng.normal(size=80), 1)
    assert cm.pearson(x, y, iters=200, seed=7).stderr == pytest.approx(
        _slow_bootstrap(lambda a, b: pearsonr(a, b)[0], x, y))
    assert cm.spearman(x, y, iters=200, seed=7).stderr == pytest.approx(
        _slow_bootstrap(lambda a, b: spearmanr(a, b)[0], x, y))


def test_per_class_and_confusion_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(0, 3, 120).tolist()
    p = [x if rng.random() < 0.5 else int(rng.integers(0, 3)) for x in t]
    prec, rec, f, _ = precision_recall_fscore_support(t, p, labels=[0, 1, 2], zero_division=0)
    out = cm.per_class_prf(t, p, [0, 1, 2], ["a", "b", "c"])
    for i, name in enumerate("abc"):
        assert out[f"precision_{name}"].value == pytest.approx(prec[i])
        assert out[f"recall_{name}"].value == pytest.approx(rec[i])
        assert out[f"f1_{name}"].value == pytest.approx(f[i])
        assert out[f"recall_{name}"].stderr is not None
    acc = cm.per_class_accuracy(t, p, [0, 1, 2], ["a", "b", "c"])
    assert [acc[f"acc_{n}"].value for n in "abc"] == pytest.approx(list(rec))
    conf = cm.confusion(t, p, [0, 1, 2], ["a", "b", "c"])
    assert conf["matrix"] == confusion_matrix(t, p, labels=[0, 1, 2]).tolist()


def test_single_label_split_warns(capsys: pytest.CaptureFixture[str]) -> None:
    assert cm.warn_single_label("math_verify", [0, 0, 0, 0])
    assert "accuracy and F1 mean nothing" in capsys.readouterr().err
    assert not cm.warn_single_label("math_verify", [0, 1, 0])


def test_glue_score_reproduces_published_bert_large() -> None:
    """BERT-large on the GLUE test leaderboard (Devlin et al., 2019, Table 1 / gluebenchmark.com): score 80.5."""
    from tasks.glue import glue_score

    published = {"cola": {"mcc": 60.5}, "sst2": {"acc": 94.9}, "mrpc": {"f1": 89.3, "acc": 85.4},
                 "stsb": {"pearson": 87.6, "spearman": 86.5}, "qqp": {"f1": 72.1, "acc": 89.3},
                 "mnli": {"acc": 86.7}, "mnli_mismatched": {"acc": 85.9}, "qnli": {"acc": 92.7},
                 "rte": {"acc": 70.1}, "wnli": {"acc": 65.1}}
    score, covered = glue_score({t: {k: Metric(v / 100, 0.01) for k, v in ms.items()} for t, ms in published.items()})
    assert round(score.value * 100, 1) == 80.5
    assert len(covered) == 9 and score.stderr is not None
