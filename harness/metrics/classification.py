"""Classification and regression metrics: values from scikit-learn / SciPy, stderrs from a vectorised bootstrap.

The value of every metric is the library's own number (so it matches what papers and the GLUE
scorer report). Corpus-level metrics (F1, MCC, correlations) have no closed-form stderr; a
bootstrap with sklearn in a Python loop would cost seconds per metric, so resamples are drawn
as one index matrix and the statistic is computed for all of them at once with NumPy.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.metrics.stats import Metric, mean_stderr

BOOT_ITERS = 1000


def _arr(x: Sequence[Any]) -> np.ndarray:
    return np.asarray(list(x))


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> Metric:
    """Accuracy with the closed-form stderr of a mean of 0/1 outcomes."""
    return mean_stderr([float(t == p) for t, p in zip(y_true, y_pred)])


def _resample(n: int, iters: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(iters, n))


def _boot_std(stats: np.ndarray) -> float | None:
    stats = stats[np.isfinite(stats)]
    return float(np.std(stats, ddof=1)) if len(stats) > 1 else None


def _counts(t: np.ndarray, p: np.ndarray, pos: Any) -> tuple[np.ndarray, ...]:
    """tp, fp, fn, tn along the last axis."""
    tp = ((t == pos) & (p == pos)).sum(-1)
    fp = ((t != pos) & (p == pos)).sum(-1)
    fn = ((t == pos) & (p != pos)).sum(-1)
    tn = ((t != pos) & (p != pos)).sum(-1)
    return tp, fp, fn, tn


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 with sklearn's zero_division=0 convention."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return prec, rec, f1


def _mcc_multiclass(t: np.ndarray, p: np.ndarray, labels: Sequence[Any]) -> np.ndarray:
    """Gorodkin's R_K (what sklearn's matthews_corrcoef computes), for each row of t/p."""
    n = t.shape[-1]
    tk = np.stack([(t == k).sum(-1) for k in labels], -1).astype(float)
    pk = np.stack([(p == k).sum(-1) for k in labels], -1).astype(float)
    c = (t == p).sum(-1).astype(float)
    cov_ytyp = c * n - (tk * pk).sum(-1)
    cov_ypyp = n * n - (pk * pk).sum(-1)
    cov_ytyt = n * n - (tk * tk).sum(-1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, cov_ytyp / np.where(denom > 0, denom, 1.0), 0.0)


def f1(y_true: Sequence[Any], y_pred: Sequence[Any], pos_label: Any = 1, iters: int = BOOT_ITERS,
       seed: int = 1234) -> Metric:
    """Binary F1 of `pos_label` (GLUE's MRPC/QQP F1), sklearn's value, bootstrap stderr."""
    from sklearn.metrics import f1_score

    t, p = _arr(y_true), _arr(y_pred)
    value = float(f1_score(t, p, pos_label=pos_label, average="binary", zero_division=0,
                           labels=sorted(set(t.tolist()) | set(p.tolist()) | {pos_label})))
    if len(t) < 2:
        return Metric(value, None)
    idx = _resample(len(t), iters, seed)
    return Metric(value, _boot_std(_prf(*_counts(t[idx], p[idx], pos_label)[:3])[2]))


def mcc(y_true: Sequence[Any], y_pred: Sequence[Any], iters: int = BOOT_ITERS, seed: int = 1234) -> Metric:
    """Matthews correlation (CoLA), sklearn's value, bootstrap stderr."""
    from sklearn.metrics import matthews_corrcoef

    t, p = _arr(y_true), _arr(y_pred)
    value = float(matthews_corrcoef(t, p))
    if len(t) < 2:
        return Metric(value, None)
    labels = sorted(set(t.tolist()) | set(p.tolist()))
    idx = _resample(len(t), iters, seed)
    return Metric(value, _boot_std(_mcc_multiclass(t[idx], p[idx], labels)))


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (xc * yc).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def pearson(x: Sequence[float], y: Sequence[float], iters: int = BOOT_ITERS, seed: int = 1234) -> Metric:
    """Pearson r (STS-B), SciPy's value, bootstrap stderr."""
    from scipy.stats import pearsonr

    a, b = _arr(x).astype(float), _arr(y).astype(float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Metric(float("nan"), None)
    value = float(pearsonr(a, b)[0])
    idx = _resample(len(a), iters, seed)
    return Metric(value, _boot_std(_pearson_rows(a[idx], b[idx])))


def spearman(x: Sequence[float], y: Sequence[float], iters: int = BOOT_ITERS, seed: int = 1234) -> Metric:
    """Spearman rho (STS-B), SciPy's value, bootstrap stderr (Pearson of average ranks, as SciPy defines it)."""
    from scipy.stats import rankdata, spearmanr

    a, b = _arr(x).astype(float), _arr(y).astype(float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Metric(float("nan"), None)
    value = float(spearmanr(a, b)[0])
    idx = _resample(len(a), iters, seed)
    return Metric(value, _boot_std(_pearson_rows(rankdata(a[idx], axis=-1), rankdata(b[idx], axis=-1))))


def per_class_prf(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any], names: Sequence[str],
                  iters: int = BOOT_ITERS, seed: int = 1234) -> dict[str, Metric]:
    """precision_<name>, recall_<name>, f1_<name> for each class (sklearn's values, bootstrap stderrs)."""
    from sklearn.metrics import precision_recall_fscore_support

    t, p = _arr(y_true), _arr(y_pred)
    prec, rec, f, _ = precision_recall_fscore_support(t, p, labels=list(labels), zero_division=0)
    idx = _resample(len(t), iters, seed) if len(t) > 1 else None
    out: dict[str, Metric] = {}
    for i, (lab, name) in enumerate(zip(labels, names)):
        errs: tuple[float | None, ...] = (None, None, None)
        if idx is not None:
            errs = tuple(_boot_std(s) for s in _prf(*_counts(t[idx], p[idx], lab)[:3]))
        out[f"precision_{name}"] = Metric(float(prec[i]), errs[0])
        out[f"recall_{name}"] = Metric(float(rec[i]), errs[1])
        out[f"f1_{name}"] = Metric(float(f[i]), errs[2])
    return out


def per_class_accuracy(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any],
                       names: Sequence[str]) -> dict[str, Metric]:
    """acc_<name>: accuracy on the rows of each true class (= that class's recall), closed-form stderr."""
    out: dict[str, Metric] = {}
    for lab, name in zip(labels, names):
        hits = [float(p == lab) for t, p in zip(y_true, y_pred) if t == lab]
        if hits:
            out[f"acc_{name}"] = mean_stderr(hits)
    return out


def confusion(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    """Confusion matrix for results.json details: rows are true classes, columns predicted (sklearn's layout)."""
    from sklearn.metrics import confusion_matrix

    m = confusion_matrix(_arr(y_true), _arr(y_pred), labels=list(labels))
    return {"labels": list(names), "rows": "true", "columns": "predicted", "matrix": m.tolist()}


def warn_single_label(task: str, y_true: Sequence[Any]) -> bool:
    """A split whose gold labels are all one value (a placeholder test split): say accuracy means nothing there."""
    values = set(_arr(y_true).tolist())
    if len(y_true) > 1 and len(values) == 1:
        print(f"warning: {task}: every gold label is {values.pop()!r}; accuracy and F1 mean nothing on this split "
              "(placeholder labels?)", file=sys.stderr)
        return True
    return False
