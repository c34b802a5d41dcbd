"""The task plugin API: a task turns dataset rows into typed requests and scores the answers.

A task never touches a model. Subclass `Task`, set the class attributes, implement `docs`,
`requests` and `score` (and `aggregate` for corpus-level metrics), then register the class
under the `harness.tasks` entry-point group. Constructors must not load data: `harness tasks`
instantiates every task just to describe it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.metrics.stats import Metric, mean_stderr
from harness.requests import Answer, Request

Doc = dict[str, Any]


@dataclass
class TaskConfig:
    """Options every task understands; task-specific ones go in `options` (`--task-option k=v`)."""

    num_fewshot: int = 0
    seed: int = 1234
    limit: int | None = None
    data_dir: Path | None = None
    chat_template: bool = False
    max_new_tokens: int | None = None
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    model_kind: str = "causal"  # set by the evaluator once the model is loaded: causal | seq-cls | image
    options: dict[str, str] = field(default_factory=dict)

    def hash(self) -> str:
        d = asdict(self)
        d["data_dir"] = None  # where the data lives does not change what is asked
        d["limit"] = None
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Task:
    """Base class with the defaults most tasks want; override what differs."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    output_type: ClassVar[str]  # "generate" | "loglikelihood" | "classify"
    metrics: ClassVar[tuple[str, ...]]
    data_source: ClassVar[str] = ""  # human-readable: hub id and local layout
    higher_is_better: ClassVar[bool] = True

    def __init__(self, cfg: TaskConfig | None = None) -> None:
        self.cfg = cfg or TaskConfig()
        self.source_description = ""  # set by docs(): where the rows actually came from

    # --- data -------------------------------------------------------------------------
    def docs(self) -> list[Doc]:
        """Every evaluation row, each with a unique string `id`. --limit is applied by the caller."""
        raise NotImplementedError

    # --- requests and scoring ---------------------------------------------------------
    def requests(self, doc: Doc) -> list[Request]:
        raise NotImplementedError

    def score(self, doc: Doc, answers: list[Answer]) -> dict[str, Any]:
        """Per-sample record: {"metrics": {name: float}, and anything worth keeping in samples/*.jsonl}."""
        raise NotImplementedError

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Metric]:
        """Default: the mean of each per-sample metric, with its closed-form standard error."""
        names = samples[0]["metrics"].keys() if samples else self.metrics
        return {m: mean_stderr([s["metrics"][m] for s in samples]) for m in names}

    # --- training ---------------------------------------------------------------------
    def train_examples(self, split: str = "train") -> list[dict[str, Any]]:
        """Examples for the trainer, built by the same prompt code as evaluation.

        Causal tasks return {"prompt": str, "target": str}; classifiers {"inputs": tuple, "label": int|float}.
        """
        raise HarnessError(f"task {self.name} has no training examples")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "output_type": self.output_type,
            "metrics": list(self.metrics),
            "data": self.data_source,
        }


# --- data helpers shared by tasks -------------------------------------------------------


def read_jsonl(path: Path) -> list[Any]:
    """One JSON value per non-blank line; a bad line is a one-line error naming file and line."""
    if not path.is_file():
        raise HarnessError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise HarnessError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return rows


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl, .json (list of rows), .csv, .tsv or .parquet file."""
    import csv

    if not path.exists():
        raise HarnessError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return read_jsonl(path)
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
                return data["data"]
            if not isinstance(data, list):
                raise HarnessError(f"{path}: expected a JSON list of rows")
            return data
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
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


def load_hub(path: str, name: str | None, split: str, local_hint: str) -> list[dict[str, Any]]:
    """Rows of a hub dataset split; offline or missing gives one line naming it and the local layout."""
    try:
        import datasets

        ds = datasets.load_dataset(path, name, split=split)
    except Exception as e:  # noqa: BLE001 - any failure here means "could not get the data"
        what = f"{path}" + (f" (config {name})" if name else "") + f" split {split}"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise HarnessError(
            f"could not load dataset {what} from the hub ({reason}); "
            f"for a local copy pass --data-dir DIR with {local_hint}"
        ) from None
    return [dict(r) for r in ds]


def hub_rows(data_dir: Path | None, local_hint: str, path: str, name: str | None, split: str
             ) -> tuple[list[dict[str, Any]], str]:
    """(rows, where) from the hub when no local file was found; with --data-dir given, the error says that too."""
    try:
        rows = load_hub(path, name, split, local_hint)
    except HarnessError as e:
        if data_dir is None:
            raise
        raise HarnessError(f"--data-dir {data_dir}: no {local_hint} there, and {e}") from None
    return rows, f"hub:{path}/" + (f"{name}/" if name else "") + split


def rows_hash(rows: list[Any]) -> str:
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def require(row: dict[str, Any], columns: tuple[str, ...], where: str) -> None:
    """One-line error naming the row when a column is missing."""
    missing = [c for c in columns if c not in row or row[c] is None]
    if missing:
        raise HarnessError(f"{where}: missing column {', '.join(missing)}")
