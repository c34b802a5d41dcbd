"""Where evaluation rows come from: one cascade for every task and question set.

A task names its file option, its official local layouts under `--data-dir` and its hub dataset;
`cascade` tries them in that order and says where the data came from (`rows_from` is the cascade for
plain tables; tasks with their own file formats give `cascade` their reader and hub loader). Readers give one-line
errors naming the file and row; an empty source is an error naming it, never an empty run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


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


def cascade(file: str | Path | None, data_dir: Path | None, layouts: Sequence[str], read: Callable[[Path], T | None],
            hub: Callable[[], tuple[T, str]] | None, flag: str = "--task-option data",
            missing: str | None = None) -> tuple[T, str]:
    """(data, where): the option file if given, else the first official layout under --data-dir, else the hub.

    Every task and question set finds its data this one way, so a mixed run reads the same --data-dir for all.
    `read` parses one local path (None: not this layout, try the next); `hub` loads the remote copy (or, for a
    demo task, generates it). With --data-dir given but no layout there the hub is still tried, and its failure
    names the directory and what was looked for (`missing`, default "no A or B").
    """
    missing = missing or (f"no {' or '.join(layouts)}" if layouts else "no local copy")
    if file is not None:
        path = Path(file)
        if not path.exists():
            raise HarnessError(f"{flag}={file}: file not found")
        found = read(path)
        if found is None:
            raise HarnessError(f"{flag}={file}: {missing} there")
        return found, str(path)
    if data_dir is not None:
        for layout in layouts:
            path = Path(data_dir) / layout
            if path.exists() and (found := read(path)) is not None:
                return found, str(path)
    if hub is None:
        if data_dir is None:
            raise HarnessError(f"no data: pass --data-dir DIR with {' or '.join(layouts)}")
        raise HarnessError(f"--data-dir {data_dir}: {missing} there")
    try:
        return hub()
    except HarnessError as e:
        if data_dir is None:
            raise
        raise HarnessError(f"--data-dir {data_dir}: {missing} there, and {e}") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """`read_table`, but an empty file is an error naming it, never an empty run."""
    return _nonempty(read_table(path), str(path))


def rows_from(file: str | Path | None, data_dir: Path | None, layouts: tuple[str, ...] | list[str],
              hub: Hub | None, flag: str = "--task-option data") -> tuple[list[dict[str, Any]], str]:
    """(rows, where) of a table-shaped dataset through `cascade`, the hub as `datasets.load_dataset` gives it."""
    def load(h: Hub) -> tuple[list[dict[str, Any]], str]:
        return _nonempty(load_hub(h.path, h.name, h.split, layouts[0] if layouts else "a local copy"), h.where()), h.where()

    return cascade(file, data_dir, layouts, read_rows, None if hub is None else lambda: load(hub), flag)


def _nonempty(rows: list[Any], where: str) -> list[Any]:
    if not rows:
        raise HarnessError(f"{where}: no rows")
    return rows


def rows_hash(rows: list[Any]) -> str:
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def as_row(row: Any, where: str) -> dict[str, Any]:
    """The row as an object; a list, number or string where a row should be is a one-line error naming it."""
    if not isinstance(row, dict):
        raise HarnessError(f"{where}: expected an object with named columns, got {type(row).__name__} {_short(row)}")
    return row


def require(row: Any, columns: tuple[str, ...], where: str) -> None:
    """One-line error naming the row when it is not an object or a column is missing."""
    missing = [c for c in columns if c not in as_row(row, where) or row[c] is None]
    if missing:
        raise HarnessError(f"{where}: missing column {', '.join(missing)}")


_KINDS = {str: "a string", list: "a list", dict: "an object", int: "an integer"}


def typed(value: Any, kind: type, what: str, where: str) -> Any:
    """`value` if it is a `kind`, else a one-line error naming the row and the field (rows are user files)."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HarnessError(f"{where}: {what} must be {_KINDS.get(kind, kind.__name__)}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
