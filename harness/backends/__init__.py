"""Backends are looked up by name through the `harness.backends` entry-point group, like tasks.

Each entry point names a `Backend` subclass; its module imports its engine lazily, so listing backends and a
missing optional dependency cost nothing (a missing one is a one-line error naming the extra to install).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from harness.backends.base import Backend
from harness.errors import HarnessError

GROUP = "harness.backends"


def backend_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as `name`, with its dependencies checked."""
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in eps:
        raise HarnessError(f"--backend {name}: unknown backend (known: {', '.join(sorted(eps))}; see `harness backends`)")
    cls = eps[name].load()
    cls.check_installed()
    return cls
