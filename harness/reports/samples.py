"""Reading a run directory's samples/<task>.jsonl: per-sample records, and per-document metric values for tests."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def samples_path(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / "samples" / f"{task.replace('/', '_')}.jsonl"


@lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int) -> tuple[dict[str, Any], ...]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise HarnessError(f"{path}:{i}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{path}:{i}: expected a JSON object per line")
            rows.append(row)
    return tuple(rows)


def read_samples(run_dir: Path, task: str) -> list[dict[str, Any]] | None:
    """The task's per-sample records of one run (None when the run kept no samples file for it)."""
    path = samples_path(run_dir, task)
    if not path.is_file():
        return None
    return list(_read(path, path.stat().st_mtime_ns))


def doc_key(row: dict[str, Any], i: int) -> str:
    return str(row.get("doc_id", i))


def metric_by_doc(run_dir: Path, task: str, metric: str) -> dict[str, Any] | None:
    """{doc_id: that document's value of `metric`} (None when the run has no samples for the task)."""
    rows = read_samples(run_dir, task)
    if rows is None:
        return None
    out: dict[str, Any] = {}
    for i, r in enumerate(rows):
        m = r.get("metrics")
        if isinstance(m, dict) and metric in m:
            out[doc_key(r, i)] = m[metric]
    return out
