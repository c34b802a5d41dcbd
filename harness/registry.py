"""Task lookup through the `harness.tasks` entry-point group, so other packages can add tasks.

An entry point names a Task subclass, or a callable taking a TaskConfig and returning a Task or a
list of Tasks (a group such as `glue`). Names with a `prefix:` (e.g. `lm-eval:mmlu`) go to the
entry point registered as `prefix:`.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from harness.errors import HarnessError
from harness.task import Task, TaskConfig

GROUP = "harness.tasks"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def task_names() -> list[str]:
    return sorted(_entry_points())


def _load(name: str, flag: str) -> Any:
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    if ":" in name and name.split(":", 1)[0] + ":" in eps:
        return eps[name.split(":", 1)[0] + ":"].load()
    known = ", ".join(n for n in sorted(eps) if not n.endswith(":"))
    raise HarnessError(f"{flag}: unknown task {name!r} (known: {known}; see `harness tasks`)")


def make_tasks(name: str, cfg: TaskConfig, flag: str = "--tasks") -> list[Task]:
    """The task(s) registered as `name`, configured by cfg (a group expands to its members); `flag` names the
    option the name came from, for the error."""
    factory = _load(name, flag)
    made = factory(cfg, name) if ":" in name and name.split(":", 1)[0] + ":" in _entry_points() else factory(cfg)
    return made if isinstance(made, list) else [made]


def parse_task_list(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise HarnessError("--tasks: give at least one task name (see `harness tasks`)")
    return names
