"""coco-caption ROUGE-L (beta = 1.2) on coco-tokenized strings."""

from __future__ import annotations

from collections.abc import Sequence


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: str, refs: Sequence[str], beta: float = 1.2) -> float:
    """coco-caption ROUGE-L of one tokenized hypothesis: F-measure of the max LCS precision and recall over references."""
    c = hyp.split(" ")
    prec, rec = [], []
    for r in refs:
        t = r.split(" ")
        lcs = _lcs(t, c)
        prec.append(lcs / len(c))
        rec.append(lcs / len(t))
    p, r_ = max(prec), max(rec)
    if p != 0 and r_ != 0:
        return ((1 + beta**2) * p * r_) / (r_ + beta**2 * p)
    return 0.0

