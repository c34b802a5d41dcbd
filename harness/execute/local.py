"""The local executor: answer planned batches one after the other in this process, storing each as it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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
