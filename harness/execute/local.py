"""The local executor: answer planned batches one after the other in this process, storing each as it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.progress import progress_bar
from harness.requests import Answer
from harness.runner import Batch, Plan, record
from harness.store import Store

# Answers one batch: (its answers, who answered, for error messages).
Ask = Callable[[Batch], tuple[list[Answer], str]]


def answer_local(ask: Ask, plans: Sequence[Plan], store: Store | None, quiet: bool, description: str,
                 status: Callable[[], str] | None = None) -> None:
    """Every batch of every plan, in plan order, under one progress bar (with the answerer's status, if any)."""
    with progress_bar(description, total=sum(p.todo for p in plans), quiet=quiet, status=status) as advance:
        for plan in plans:
            for batch in plan.batches:
                out, who = ask(batch)
                record(plan, batch, out, store, who)
                advance(len(batch.items))
            plan.done_at = time.time()


# Sends (variant label, request) pairs at once and calls done(i, answer) as each arrives (OpenAISession.answer_each).
Each = Callable[[Sequence[tuple[str, Any]], Callable[[int, Answer], None]], None]


def answer_streamed(each: Each, plans: Sequence[Plan], store: Store | None, quiet: bool, description: str,
                    status: Callable[[], str] | None = None, label: str | None = None) -> None:
    """For a session that takes any number of requests and hands back each answer as it arrives (a served
    endpoint): all of a plan's requests go out together (the session bounds how many are in flight), and each answer
    is stored the moment it returns, so a killed run loses only the requests in flight. `label` sends every request
    as that variant's (a per-variant caller's plan labels its requests "model")."""
    with progress_bar(description, total=sum(p.todo for p in plans), quiet=quiet, status=status) as advance:
        for plan in plans:
            flat = [(b, j) for b in plan.batches for j in range(len(b.items))]

            def done(i: int, a: Answer, plan: Plan = plan, flat: list[tuple[Batch, int]] = flat) -> None:
                b, j = flat[i]
                record(plan, Batch(b.kind, [b.items[j]], b.mixed, [b.keys[j]]), [a], store, "answer_each")
                advance(1)

            each([(label or b.items[j][0], b.items[j][1]) for b, j in flat], done)
            plan.done_at = time.time()
