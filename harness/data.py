"""Where evaluation rows come from: one cascade for every task and question set.

A task names its file option, its official local layouts under `--data-dir` and its hub dataset;
`rows_from` tries them in that order and says where the rows came from. Readers give one-line
errors naming the file and row; an empty source is an error naming it, never an empty run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def read_jsonl(path: Path) -> list[Any]:
    """One JSON value per non-blank line; a bad line is a one-line error naming file and line."""
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise HarnessError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from None
    return rows


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl, .json (list of rows), .csv, .tsv or .parquet file."""
    if not path.exists():
        raise HarnessError(f"{path}: file not found")
    if path.is_dir():
        raise HarnessError(f"{path}: is a directory, expected a data file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return read_jsonl(path)
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise HarnessError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
            if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
                return data["data"]
            if not isinstance(data, list):
                raise HarnessError(f"{path}: expected a JSON list of rows")
            return data
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".parquet":
            import pyarrow
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path).to_pylist()
            except pyarrow.ArrowException as e:
                raise HarnessError(f"{path}: not a readable parquet file ({str(e).splitlines()[0][:160]})") from None
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from None
    raise HarnessError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .csv, .tsv or .parquet)")


def find_local(data_dir: Path | None, *candidates: str) -> Path | None:
    """The first existing `data_dir/candidate`, or None. Candidates are official layouts."""
    if data_dir is None:
        return None
    for c in candidates:
        p = Path(data_dir) / c
        if p.exists():
            return p
    return None


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What `datasets.load_dataset` raises when the data cannot be had (offline, moved, bad config or split)."""
    errors: list[type[BaseException]] = [OSError, ConnectionError, ValueError, TimeoutError]
    try:
        from datasets.exceptions import DatasetsError

        errors.append(DatasetsError)
    except ImportError:
        pass
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:
        pass
    return tuple(errors)


def load_hub(path: str, name: str | None, split: str, local_hint: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Rows of a hub dataset split; offline or missing gives one line naming it and the local layout."""
    import datasets

    try:
        ds = datasets.load_dataset(path, name, split=split, **kwargs)
    except _hub_errors() as e:
        what = f"{path}" + (f" (config {name})" if name else "") + f" split {split}"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise HarnessError(
            f"could not load dataset {what} from the hub ({reason}); "
            f"for a local copy pass --data-dir DIR with {local_hint}"
        ) from None
    return [dict(r) for r in ds]


@dataclass(frozen=True)
class Hub:
    """A hub dataset split: `datasets.load_dataset(path, name, split=split)`."""

    path: str
    name: str | None
    split: str

    def where(self) -> str:
        return f"hub:{self.path}/" + (f"{self.name}/" if self.name else "") + self.split


def rows_from(file: str | Path | None, data_dir: Path | None, layouts: tuple[str, ...] | list[str],
              hub: Hub | None, flag: str = "--task-option data") -> tuple[list[dict[str, Any]], str]:
    """(rows, where): the option file if given, else the first official layout under --data-dir, else the hub.

    An empty source is an error naming it. With --data-dir given but no layout there, the hub is still tried
    and its failure names the directory and the layouts looked for.
    """
    if file is not None:
        path = Path(file)
        if not path.exists():
            raise HarnessError(f"{flag}={file}: file not found")
        return _nonempty(read_table(path), str(path)), str(path)
    local = find_local(data_dir, *layouts)
    if local is not None:
        return _nonempty(read_table(local), str(local)), str(local)
    hint = " or ".join(layouts)
    if hub is None:
        if data_dir is None:
            raise HarnessError(f"no data: pass --data-dir DIR with {hint}")
        raise HarnessError(f"--data-dir {data_dir}: no {hint} there")
    try:
        rows = load_hub(hub.path, hub.name, hub.split, layouts[0] if layouts else hint)
    except HarnessError as e:
        if data_dir is None:
            raise
        raise HarnessError(f"--data-dir {data_dir}: no {hint} there, and {e}") from None
    return _nonempty(rows, hub.where()), hub.where()


def _nonempty(rows: list[Any], where: str) -> list[Any]:
    if not rows:
        raise HarnessError(f"{where}: no rows")
    return rows


def rows_hash(rows: list[Any]) -> str:
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def require(row: dict[str, Any], columns: tuple[str, ...], where: str) -> None:
    """One-line error naming the row when a column is missing."""
    missing = [c for c in columns if c not in row or row[c] is None]
    if missing:
        raise HarnessError(f"{where}: missing column {', '.join(missing)}")
