"""The runner: dedupe requests, skip what the store has, order by length, batch, record.

Models only see lists of same-kind requests and return one answer each. Ordering is longest
first (an out-of-memory shows up in the first batch, and padding is minimal); loglikelihood
requests with the same context stay adjacent so a model can score the context once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from harness.errors import HarnessError
from harness.progress import progress_bar
from harness.requests import Answer, Classify, Generate, LogLikelihood, Request
from harness.store import Store

T = TypeVar("T")


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


def _batches(kind: str, reqs: list[T], size: int, stem: Callable[[T], Any] | None = None) -> list[list[T]]:
    """Consecutive batches of `size` requests; for log-likelihoods, of `size` distinct context stems.

    A model scores a shared context once, so what fills a forward pass is the number of contexts, not of
    requests: counting stems keeps a batch of multiple-choice questions as wide as a batch of full sequences.
    """
    if kind != "loglikelihood":
        return [reqs[i : i + size] for i in range(0, len(reqs), size)]
    key = stem or (lambda r: _stem(r))  # type: ignore[arg-type]
    out: list[list[T]] = []
    stems: set[Any] = set()
    for r in reqs:
        s = key(r)
        if not out or (s not in stems and len(stems) == size):
            out.append([])
            stems = set()
        stems.add(s)
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


def run_mixed(
    session: Any,
    per_variant: Mapping[str, tuple[str, Sequence[Request]]],
    store: Store | None = None,
    resume: bool = False,
    quiet: bool = False,
    description: str = "requests",
) -> dict[str, dict[str, Answer]]:
    """Answer the requests of every variant ({label: (store key, requests)}) in batches that mix variants, for a
    backend whose engine serves them all at once; returns {label: {request.key(): answer}}, each stored under its
    own variant as its batch finishes."""
    answers: dict[str, dict[str, Answer]] = {label: {} for label in per_variant}
    todo: list[tuple[str, Request]] = []
    for label, (mkey, reqs) in per_variant.items():
        unique = {r.key(): r for r in reqs}
        if store is not None and resume:
            answers[label].update(store.get_many(mkey, list(unique)))
        todo += [(label, r) for k, r in unique.items() if k not in answers[label]]
    if resume:
        done = sum(len(a) for a in answers.values())
        print(f"{description}: {done} answers from the store, {len(todo)} to compute", file=sys.stderr)
    by_kind: dict[str, list[tuple[str, Request]]] = {}
    for item in todo:
        by_kind.setdefault(item[1].kind, []).append(item)
    with progress_bar(description, total=len(todo), quiet=quiet) as advance:
        for kind, items in by_kind.items():
            items.sort(key=lambda it: (_order(it[1]), it[0]))
            for batch in _batches(kind, items, max(1, session.batch_size),
                                  stem=lambda it: (it[0], _stem(it[1]))):  # type: ignore[arg-type]
                out = session.answer(kind, batch)
                if len(out) != len(batch):
                    raise RuntimeError(f"{type(session).__name__}.answer returned {len(out)} answers for {len(batch)}")
                per: dict[str, list[tuple[str, str, Answer]]] = {}
                for (label, r), a in zip(batch, out):
                    per.setdefault(label, []).append((r.key(), kind, a))
                    answers[label][r.key()] = a
                if store is not None:
                    for label, keyed in per.items():
                        store.put_many(per_variant[label][0], keyed)
                advance(len(batch))
    return answers
