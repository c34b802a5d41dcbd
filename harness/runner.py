"""The runner: dedupe requests, skip what the store has, order by length, batch, record.

Models only see lists of same-kind requests and return one answer each. Ordering is longest
first (an out-of-memory shows up in the first batch, and padding is minimal); loglikelihood
requests with the same context stay adjacent so a model can score the context once.

Planning (which batches, in which order) is separate from answering (harness.execute: a local loop, or replicas on
a Ray cluster), so every executor sends the model exactly the batches a one-process run sends, and results agree.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.backends.base import Model  # noqa: F401 - re-exported: what a backend's per-variant model implements
from harness.errors import HarnessError
from harness.requests import Answer, LogLikelihood, Request
from harness.store import Store

T = TypeVar("T")


def _stem(req: Any) -> str:  # a LogLikelihood (callers sort only those by stem)
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
    key = stem or _stem
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


@dataclass
class Batch:
    """One model call: same-kind (variant label, request) pairs. `mixed` batches may hold several variants (for an
    engine that serves them all at once); the others hold one variant's requests."""

    kind: str
    items: list[tuple[str, Request]]
    mixed: bool = False
    keys: list[str] = field(default_factory=list)  # request.key() of each item, computed once when planned

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [r.key() for _, r in self.items]

    @property
    def label(self) -> str:
        return self.items[0][0]

    @property
    def requests(self) -> list[Request]:
        return [r for _, r in self.items]


@dataclass
class Plan:
    """The batches still to answer for some variants' requests, and the answers so far ({label: {key: answer}}).
    `done_at` is set (time.time()) by an executor when the last batch is recorded."""

    model_keys: dict[str, str]
    answers: dict[str, dict[str, Answer]]
    batches: list[Batch] = field(default_factory=list)
    done_at: float | None = None

    @property
    def todo(self) -> int:
        return sum(len(b.items) for b in self.batches)


def _from_store(plan: Plan, per_variant: Mapping[str, Sequence[Request]], store: Store | None, resume: bool,
                description: str) -> list[tuple[str, Request, str]]:
    """The (label, request, key) triples still to compute: deduped per variant, minus what the store has (with
    --resume)."""
    todo: list[tuple[str, Request, str]] = []
    for label, reqs in per_variant.items():
        unique: dict[str, Request] = {}
        for r in reqs:
            unique.setdefault(r.key(), r)
        if store is not None and resume:
            plan.answers[label].update(store.get_many(plan.model_keys[label], list(unique)))
        todo += [(label, r, k) for k, r in unique.items() if k not in plan.answers[label]]
    if resume:
        done = sum(len(a) for a in plan.answers.values())
        print(f"{description}: {done} answers from the store, {len(todo)} to compute", file=sys.stderr)
    return todo


def _size(batch_size: int | Mapping[str, int], kind: str, default: int = 8) -> int:
    """A plan's batch size for one request kind: one size for all, or per kind (falling back to "default")."""
    if isinstance(batch_size, int):
        return max(1, batch_size)
    return max(1, int(batch_size.get(kind, batch_size.get("default", default))))


def plan_requests(model_key: str, requests: Sequence[Request], batch_size: int | Mapping[str, int],
                  store: Store | None = None,
                  resume: bool = False, description: str = "requests", label: str = "model") -> Plan:
    """The batches run_requests sends for one variant: per kind (first-seen order), longest first."""
    plan = Plan({label: model_key}, {label: {}})
    by_kind: dict[str, list[tuple[str, Request, str]]] = {}
    for item in _from_store(plan, {label: requests}, store, resume, description):
        by_kind.setdefault(item[1].kind, []).append(item)
    for kind, items in by_kind.items():
        items.sort(key=lambda it: _order(it[1]))
        plan.batches += [_batch(kind, b, False) for b in _batches(kind, items, _size(batch_size, kind),
                                                                   stem=lambda it: _stem(it[1]))]
    return plan


def _batch(kind: str, triples: list[tuple[str, Request, str]], mixed: bool) -> Batch:
    return Batch(kind, [(label, r) for label, r, _ in triples], mixed, [k for _, _, k in triples])


def plan_mixed(per_variant: Mapping[str, tuple[str, Sequence[Request]]], batch_size: int | Mapping[str, int],
               store: Store | None = None,
               resume: bool = False, description: str = "requests") -> Plan:
    """The batches run_mixed sends: every variant's requests in batches that mix variants."""
    plan = Plan({label: mkey for label, (mkey, _) in per_variant.items()}, {label: {} for label in per_variant})
    todo = _from_store(plan, {label: reqs for label, (_, reqs) in per_variant.items()}, store, resume, description)
    by_kind: dict[str, list[tuple[str, Request, str]]] = {}
    for item in todo:
        by_kind.setdefault(item[1].kind, []).append(item)
    for kind, items in by_kind.items():
        items.sort(key=lambda it: (_order(it[1]), it[0]))
        plan.batches += [_batch(kind, b, True) for b in _batches(kind, items, _size(batch_size, kind),
                                                                  stem=lambda it: (it[0], _stem(it[1])))]
    return plan


def record(plan: Plan, batch: Batch, out: list[Answer], store: Store | None, who: str) -> None:
    """Keep one batch's answers in the plan and the store (one transaction per variant), as the batch returns."""
    record_many([(plan, batch, out, who)], store)


def record_many(returned: Sequence[tuple[Plan, Batch, list[Answer], str]], store: Store | None) -> None:
    """Keep the answers of batches that returned together (plan, batch, answers, who answered): one store
    transaction per variant for all of them, so a driver fed by many replicas commits less often, not later."""
    per: dict[str, list[tuple[str, str, Answer]]] = {}
    for plan, batch, out, who in returned:
        if len(out) != len(batch.items):
            raise RuntimeError(f"{who} returned {len(out)} answers for {len(batch.items)}")
        for (label, _), key, a in zip(batch.items, batch.keys, out):
            per.setdefault(plan.model_keys[label], []).append((key, batch.kind, a))
            plan.answers[label][key] = a
    if store is not None:
        for mkey, keyed in per.items():
            store.put_many(mkey, keyed)


def planned_sizes(answerer: Any) -> int | dict[str, int]:
    """The batch sizes a model or session asks the runner for: its batch_size, or per kind where it says so
    (`batch_sizes`, e.g. hf's continuous batching takes several batches of generate requests per call)."""
    per_kind = dict(getattr(answerer, "batch_sizes", None) or {})
    return {"default": int(answerer.batch_size), **per_kind} if per_kind else int(answerer.batch_size)


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
    from harness.execute.local import answer_local, answer_streamed

    plan = plan_requests(model_key, requests, planned_sizes(model), store, resume, description)
    for kind in dict.fromkeys(b.kind for b in plan.batches):
        if getattr(model, kind, None) is None:
            raise HarnessError(f"model {model.identity.get('base', '?')} cannot answer {kind} requests")

    session = getattr(model, "session", None)  # one variant of a session (VariantModel)
    if hasattr(session, "answer_each"):  # a served endpoint: store each answer as it arrives
        answer_streamed(session.answer_each, [plan], store, quiet, description, session.status,  # type: ignore[union-attr]
                        label=model.label)  # type: ignore[attr-defined]
        return plan.answers["model"]

    def ask(batch: Batch) -> tuple[list[Answer], str]:
        return getattr(model, batch.kind)(batch.requests), f"{type(model).__name__}.{batch.kind}"

    answer_local(ask, [plan], store, quiet, description, status=getattr(model, "status", None))
    return plan.answers["model"]


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
    from harness.execute.local import answer_local, answer_streamed

    plan = plan_mixed(per_variant, planned_sizes(session), store, resume, description)
    if hasattr(session, "answer_each"):  # answers arrive one by one (a served endpoint): store each as it comes
        answer_streamed(session.answer_each, [plan], store, quiet, description, getattr(session, "status", None))
        return plan.answers

    def ask(batch: Batch) -> tuple[list[Answer], str]:
        return session.answer(batch.kind, batch.items), f"{type(session).__name__}.answer"

    answer_local(ask, [plan], store, quiet, description, status=getattr(session, "status", None))
    return plan.answers
