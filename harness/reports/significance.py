"""Paired tests of an adapter against its base on the same documents, from per-sample scores.

0/1 scores (accuracy, exact match, pass@1): McNemar's exact test, i.e. a two-sided binomial test on the
discordant pairs (scipy.stats.binomtest, p = 0.5); it equals statsmodels' `mcnemar(exact=True)`.
Other scores: a seeded paired bootstrap of the mean change. Documents are resampled with the same indices
for both sides, in the batches scipy.stats.bootstrap(paired=True, batch=...) draws, so its bootstrap
distribution is that of scipy; the p-value is the share of the null-centred bootstrap changes at least as
large as the observed change. Seed, resamples and batching are those of the forgetting report, so both give
the same p-value for the same vectors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ITERS = 2000
SEED = 1234
MAX_BATCH_CELLS = 2_000_000  # indices drawn per batch (memory), as the forgetting report draws them


@dataclass(frozen=True)
class PairedTest:
    """One adapter-vs-base comparison on n shared documents."""

    test: str  # "mcnemar-exact" or "paired-bootstrap"
    n: int
    change: float  # mean(adapter) - mean(base), unscaled
    p_value: float
    gained: int | None = None  # McNemar: base 0 -> adapter 1
    lost: int | None = None  # McNemar: base 1 -> adapter 0
    ci95: tuple[float, float] | None = None  # bootstrap: percentile interval of the change

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def is_binary(*vectors: np.ndarray) -> bool:
    return all(set(np.unique(v).tolist()) <= {0.0, 1.0} for v in vectors)


def mcnemar_exact(base: np.ndarray, adapter: np.ndarray) -> PairedTest:
    """Two-sided exact McNemar test: the discordant pairs against Binomial(b + c, 1/2)."""
    from scipy.stats import binomtest

    gained = int(((base == 0) & (adapter == 1)).sum())
    lost = int(((base == 1) & (adapter == 0)).sum())
    p = 1.0 if gained + lost == 0 else float(binomtest(gained, gained + lost, 0.5).pvalue)
    return PairedTest("mcnemar-exact", len(base), float(adapter.mean() - base.mean()), p, gained=gained, lost=lost)


def batch_size(n: int, iters: int) -> int:
    """Resamples per batch: the `batch` to give scipy.stats.bootstrap for the same draws."""
    return max(1, min(iters, MAX_BATCH_CELLS // max(n, 1)))


def bootstrap_changes(base: np.ndarray, adapter: np.ndarray, iters: int = ITERS, seed: int = SEED) -> np.ndarray:
    """mean(adapter) - mean(base) over `iters` paired resamples of the documents."""
    n = len(base)
    rng = np.random.default_rng(seed)
    step, out, left = batch_size(n, iters), [], iters
    while left > 0:
        idx = rng.integers(0, n, size=(min(step, left), n))
        out.append(adapter[idx].mean(axis=-1) - base[idx].mean(axis=-1))
        left -= len(idx)
    return np.concatenate(out)


def bootstrap_p_value(changes: np.ndarray, observed: float) -> float:
    """Two-sided: how often a null-centred bootstrap change is at least as far from 0 as the observed one."""
    centred = changes - changes.mean()
    return float((np.abs(centred) >= abs(observed)).mean())


def paired_bootstrap(base: np.ndarray, adapter: np.ndarray, iters: int = ITERS, seed: int = SEED) -> PairedTest:
    changes = bootstrap_changes(base, adapter, iters, seed)
    observed = float(adapter.mean() - base.mean())
    lo, hi = np.percentile(changes, [2.5, 97.5])
    return PairedTest("paired-bootstrap", len(base), observed, bootstrap_p_value(changes, observed),
                      ci95=(float(lo), float(hi)))


def paired_test(base: list[float] | np.ndarray, adapter: list[float] | np.ndarray, iters: int = ITERS,
                seed: int = SEED) -> PairedTest | None:
    """McNemar for 0/1 scores, paired bootstrap otherwise; None when no pair has both scores."""
    b, a = np.asarray(base, dtype=float), np.asarray(adapter, dtype=float)
    keep = np.isfinite(b) & np.isfinite(a)
    b, a = b[keep], a[keep]
    if len(b) == 0:
        return None
    return mcnemar_exact(b, a) if is_binary(b, a) else paired_bootstrap(b, a, iters, seed)


def pair_by_doc(base: dict[str, Any], adapter: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The two sides' scores on the documents both have a number for ({doc_id: score}), in the base's order."""
    bs, as_ = [], []
    for doc, v in base.items():
        w = adapter.get(doc)
        if _number(v) and w is not None and _number(w):
            bs.append(float(v))
            as_.append(float(w))
    return bs, as_


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)  # bools count as 0/1


def marker(p: float | None) -> str:
    """*, ** or *** for p below 0.05, 0.01, 0.001; '' otherwise."""
    if p is None:
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


LEGEND = ("paired test on the per-sample scores of the same documents: McNemar exact for 0/1 metrics, paired "
          f"bootstrap ({ITERS} resamples, seed {SEED}) otherwise; * p < 0.05, ** p < 0.01, *** p < 0.001")
