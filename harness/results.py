"""Results files: schema, atomic writes, reading with version checks.

A run directory holds `results.json` (one model variant: base or base + adapter) and
`samples/<task>.jsonl`. Files are written to a temporary name and renamed, so a killed run
never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError

SCHEMA_VERSION = "1.0"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def header() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "harness_version": __version__, "git_commit": git_commit()}


def read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object; not a harness results file")
    version = str(data.get("schema_version", ""))
    if not version:
        raise HarnessError(f"{path}: no schema_version; not a harness results file")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise HarnessError(f"{path}: schema_version {version} is not supported (this harness reads {SCHEMA_VERSION}.x)")
    return data


def find_results(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.exists():
        raise HarnessError(f"{root}: no such file or directory")
    return sorted(root.rglob("results.json"))
