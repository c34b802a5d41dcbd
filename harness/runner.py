"""The runner: dedupe requests, skip what the store has, order by length, batch, record.

Models only see lists of same-kind requests and return one answer each. Ordering is longest
first (an out-of-memory shows up in the first batch, and padding is minimal); loglikelihood
requests with the same context stay adjacent so a model can score the context once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.progress import progress_bar
from harness.requests import Answer, Classify, Generate, LogLikelihood, Request
from harness.store import Store


class Model(Protocol):
    """What a model kind implements: the request kinds it can answer, in batches."""

    identity: dict[str, Any]
    batch_size: int

    def generate(self, requests: list[Generate]) -> list[list[str]]: ...
    def loglikelihood(self, requests: list[LogLikelihood]) -> list[tuple[float, bool]]: ...
    def classify(self, requests: list[Classify]) -> list[list[float]]: ...


def _stem(req: LogLikelihood) -> str:
    """The context minus its last word: contexts that differ only there (WinoGrande's options filling the blank)
    share a batch, where the model can share their common prefix."""
    return req.context.rsplit(" ", 1)[0]


def _order(req: Request) -> tuple[Any, ...]:
    if isinstance(req, LogLikelihood):
        stem = _stem(req)
        return (-len(stem), stem, -len(req.context), req.context, -len(req.continuation))
    return (-req.length(),)


def _batches(kind: str, reqs: list[Request], size: int) -> list[list[Request]]:
    """Consecutive batches of `size` requests; for log-likelihoods, of `size` distinct context stems.

    A model scores a shared context once, so what fills a forward pass is the number of contexts, not of
    requests: counting stems keeps a batch of multiple-choice questions as wide as a batch of full sequences.
    """
    if kind != "loglikelihood":
        return [reqs[i : i + size] for i in range(0, len(reqs), size)]
    out: list[list[Request]] = []
    stems: set[str] = set()
    for r in reqs:
        stem = _stem(r)  # type: ignore[arg-type]
        if not out or (stem not in stems and len(stems) == size):
            out.append([])
            stems = set()
        stems.add(stem)
        out[-1].append(r)
    return out


def run_requests(
    model: Model,
    model_key: str,
    requests: Sequence[Request],
    store: Store | None = None,
    resume: bool = False,
    quiet: bool = False,
    description: str = "requests",
) -> dict[str, Answer]:
    """Answer every request; returns {request.key(): answer}. Each batch is stored as it finishes."""
    unique: dict[str, Request] = {}
    for r in requests:
        unique.setdefault(r.key(), r)
    answers: dict[str, Answer] = {}
    if store is not None and resume:
        answers.update(store.get_many(model_key, list(unique)))
    todo = [r for k, r in unique.items() if k not in answers]
    if resume:
        print(f"{description}: {len(answers)} answers from the store, {len(todo)} to compute", file=sys.stderr)
    by_kind: dict[str, list[Request]] = {}
    for r in todo:
        by_kind.setdefault(r.kind, []).append(r)
    with progress_bar(description, total=len(todo), quiet=quiet) as advance:
        for kind, reqs in by_kind.items():
            method = getattr(model, kind, None)
            if method is None:
                raise HarnessError(f"model {model.identity.get('base', '?')} cannot answer {kind} requests")
            reqs.sort(key=_order)
            for batch in _batches(kind, reqs, max(1, model.batch_size)):
                out = method(batch)
                if len(out) != len(batch):
                    raise RuntimeError(f"{type(model).__name__}.{kind} returned {len(out)} answers for {len(batch)}")
                keyed = [(r.key(), kind, a) for r, a in zip(batch, out)]
                if store is not None:
                    store.put_many(model_key, keyed)
                answers.update((k, a) for k, _, a in keyed)
                advance(len(batch))
    return answers
