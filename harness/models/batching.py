"""Batches that fit: the largest batch per request kind and length bucket, learnt by halving on out-of-memory.

An out-of-memory error never loses an answer: the batch that hit it is split in halves and retried, and the size
that fits is remembered for later batches of that kind and length. The answers do not depend on how a batch is
split (generation is batch-size invariant, each sample draws from its own generator), so the results do not
change either.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from harness.errors import HarnessError

AUTO_START = 64  # --batch-size auto: the first batch tried; halved until it fits
T = TypeVar("T")


def is_oom(e: BaseException) -> bool:
    """torch's out-of-memory errors on CUDA, MPS and the CPU allocator."""
    import torch

    if isinstance(e, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                            or "not enough memory" in text)


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bucket(request: Any) -> int:
    """A request's length bucket: powers of two of its characters (plus what it may generate)."""
    size = sum(len(str(getattr(request, f, "") or "")) for f in ("prompt", "context", "continuation", "text"))
    size += 4 * int(getattr(request, "max_new_tokens", 0) or 0) * int(getattr(request, "n", 1) or 1)
    return max(1, size).bit_length()


class AutoBatch:
    """Remembers, per (kind, length bucket), the largest batch that ran without running out of memory."""

    def __init__(self) -> None:
        self.limits: dict[tuple[str, int], int] = {}
        self.halvings = 0

    def run(self, kind: str, items: Sequence[T], answer: Callable[[list[T]], list[Any]],
            key: Callable[[T], Any] = lambda x: x) -> list[Any]:
        """answer(items) in order, split into the sizes known to fit; halved and retried on out-of-memory."""
        if not items:
            return []
        b = max(bucket(key(x)) for x in items)
        out: list[Any] = []
        i = 0
        while i < len(items):
            size = min(self.limits.get((kind, b), len(items)), len(items) - i)
            chunk = list(items[i : i + size])
            try:
                out += answer(chunk)
            except Exception as e:  # noqa: BLE001 - only out-of-memory is handled; anything else is re-raised
                if not is_oom(e):
                    raise
                _free()
                if size == 1:
                    raise HarnessError(f"out of memory answering a single {kind} request; use a smaller model, "
                                       "--load-in-4bit or a device with more memory") from None
                self.limits[(kind, b)] = size // 2
                self.halvings += 1
                continue
            i += size
        return out


class SafeModel:
    """A variant's model whose calls go through an AutoBatch (kept by the session, shared by its variants)."""

    def __init__(self, model: Any, auto: AutoBatch) -> None:
        self.inner = model
        self.auto = auto
        self.identity = model.identity

    @property
    def batch_size(self) -> int:
        return int(self.inner.batch_size)

    @batch_size.setter
    def batch_size(self, n: int) -> None:
        self.inner.batch_size = n

    @property
    def batch_sizes(self) -> dict[str, int]:
        return dict(getattr(self.inner, "batch_sizes", None) or {})

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("generate", "loglikelihood", "classify"):
            return attr
        return lambda requests, **kw: self.auto.run(name, requests, lambda part: attr(part, **kw))
