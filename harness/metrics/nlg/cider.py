"""coco-caption CIDEr (its `Cider` scorer: CIDEr-D's clipping and length penalty) on coco-tokenized strings."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def _precook(s: str, n: int = 4) -> Counter:
    words = s.split()
    c: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


def _vector(cnts: Counter, df: Counter, ref_len: float, n: int) -> tuple[list[dict], list[float], int]:
    """tf-idf vectors per n-gram order, their norms, and coco-caption's "length" (its bigram count, sic)."""
    v: list[dict] = [{} for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for ng, tf in cnts.items():
        d = math.log(max(1.0, df.get(ng, 0.0)))
        k = len(ng) - 1
        v[k][ng] = float(tf) * (ref_len - d)
        norm[k] += v[k][ng] ** 2
        if k == 1:
            length += tf
    return v, [math.sqrt(x) for x in norm], length


def _segment_score(test: tuple[list[dict], list[float], int], refs: list[tuple[list[dict], list[float], int]],
                   n: int, sigma: float) -> float:
    """CIDEr-D of one hypothesis vector against its reference vectors: clipped cosine, Gaussian length penalty."""
    vh, nh, lh = test
    penalty_den = 2 * sigma**2
    total = [0.0] * n
    for vr, nr, lr in refs:
        delta = float(lh - lr)
        for k in range(n):
            val = 0.0
            ref_k = vr[k]
            for ng, x in vh[k].items():
                y = ref_k.get(ng, 0.0)
                val += min(x, y) * y
            if nh[k] != 0 and nr[k] != 0:
                val /= nh[k] * nr[k]
            total[k] += val * math.e ** (-(delta**2) / penalty_den)
    return sum(total) / n / len(refs) * 10.0


def cider_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> list[float]:
    """coco-caption CIDEr (the `Cider` scorer, i.e. CIDEr-D's clipping and length penalty), one score per segment.

    Document frequencies come from the references of this set and log(#segments) is the idf base, as in the original.
    """
    crefs = [[_precook(r, n) for r in group] for group in refs]
    ctest = [_precook(h, n) for h in hyps]
    df: Counter = Counter()
    for group in crefs:
        for ng in {ng for r in group for ng in r}:
            df[ng] += 1
    ref_len = math.log(float(len(crefs)))
    return [_segment_score(_vector(test, df, ref_len, n), [_vector(r, df, ref_len, n) for r in group], n, sigma)
            for test, group in zip(ctest, crefs)]
