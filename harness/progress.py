"""One rich progress bar per long loop; silent with --quiet or when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, total: int, quiet: bool = False,
                 status: Callable[[], str] | None = None) -> Iterator[Callable[[int], None]]:
    """advance(n) moves the bar; `status` (e.g. a transport's requests/s, retries, failures) is shown after it."""
    if quiet or total == 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console, transient=not console.is_terminal,
    ) as progress:
        tid = progress.add_task(description, total=total, status=status() if status else "")

        def advance(n: int) -> None:
            if status is not None:
                progress.update(tid, advance=n, status=status())
            else:
                progress.advance(tid, n)

        yield advance
