"""Standard errors and pass@k: the statistics every task shares (corpus-level bootstraps live with their metrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    value: float
    stderr: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {"value": self.value, "stderr": self.stderr}


def mean_stderr(values: Sequence[float]) -> Metric:
    """Mean with the closed-form standard error of the mean (sample std, ddof=1)."""
    n = len(values)
    if n == 0:
        return Metric(float("nan"), None)
    mean = sum(values) / n
    if n < 2:
        return Metric(mean, None)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Metric(mean, math.sqrt(var / n))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
