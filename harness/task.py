"""The task plugin API: a task turns dataset rows into typed requests and scores the answers.

A task never touches a model. Subclass `Task`, set the class attributes, implement `docs`,
`requests` and `score` (and `aggregate` for corpus-level metrics), then register the class
under the `harness.tasks` entry-point group. Constructors must not load data: `harness tasks`
instantiates every task just to describe it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.metrics.stats import Metric, mean_stderr
from harness.requests import Answer, Generate, Request

Doc = dict[str, Any]


@dataclass(frozen=True)
class ModelInfo:
    """What a task may know about the model it is asked of: its kind (causal, seq-cls or image).

    Passed to `requests`, `score` and `train_examples` by whoever holds the model, so a task never has to
    guess or be told through mutable state.
    """

    kind: str = "causal"


CAUSAL = ModelInfo("causal")


@dataclass
class TaskConfig:
    """Options every task understands; task-specific ones go in `options` (`--task-option k=v`)."""

    num_fewshot: int | None = None  # None: the task's default (0 for harness tasks; an lm-eval task's own)
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
    options: dict[str, str] = field(default_factory=dict)
    # The fields the user set explicitly (the CLI fills this in), so that a flag given at its default value
    # (`--temperature 0`, `--samples 1`) still wins over a task's own setting, such as an lm-eval YAML's do_sample
    # or repeats. A field whose value differs from its default counts as given anyway (Python callers).
    given: frozenset[str] = frozenset()

    def explicit(self, name: str) -> bool:
        """Whether the user chose this field's value (else a task may use its own default)."""
        return name in self.given or getattr(self, name) != TaskConfig.__dataclass_fields__[name].default

    def hash(self) -> str:
        d = asdict(self)
        d["data_dir"] = None  # where the data lives does not change what is asked
        d["limit"] = None
        if d["given"]:
            d["given"] = sorted(d["given"])
        else:
            del d["given"]  # unchanged hash for a config without explicit flags
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def fewshot(self) -> int:
        """The number of exemplars a harness task uses (unset = zero-shot)."""
        return self.num_fewshot or 0

    def validate(self) -> TaskConfig:
        """Impossible values are one-line errors naming the flag (checked before any data or model loads)."""
        checks = [
            (self.num_fewshot is not None and self.num_fewshot < 0, "--num-fewshot", "must be >= 0", self.num_fewshot),
            (self.limit is not None and self.limit <= 0, "--limit", "must be > 0", self.limit),
            (self.max_new_tokens is not None and self.max_new_tokens <= 0, "--max-new-tokens", "must be > 0",
             self.max_new_tokens),
            (self.samples < 1, "--samples", "must be > 0", self.samples),
            (not math.isfinite(self.temperature) or self.temperature < 0, "--temperature", "must be >= 0 (0 = greedy)",
             self.temperature),
            (not math.isfinite(self.top_p) or not 0 < self.top_p <= 1, "--top-p", "must be in (0, 1]", self.top_p),
            (self.num_beams < 1, "--num-beams", "must be >= 1", self.num_beams),
            (not math.isfinite(self.length_penalty), "--length-penalty", "must be a finite number", self.length_penalty),
            (self.no_repeat_ngram_size < 0, "--no-repeat-ngram-size", "must be >= 0", self.no_repeat_ngram_size),
        ]
        for bad, flag, rule, value in checks:
            if bad:
                raise HarnessError(f"{flag}: {rule}, got {value}")
        if self.samples > 1 and self.temperature == 0:
            raise HarnessError("--samples > 1 needs --temperature > 0 (greedy samples would all be identical)")
        if self.num_beams > 1 and self.temperature > 0:
            raise HarnessError("--num-beams > 1 with --temperature > 0: beam search is deterministic; give one of them")
        if self.num_beams > 1 and self.samples > 1:
            raise HarnessError("--num-beams > 1 with --samples > 1: sampled pass@k needs --temperature, not beams")
        return self


def generate_request(cfg: TaskConfig, prompt: str | tuple[tuple[str, str], ...], stop: tuple[str, ...] = (),
                     max_new_tokens: int = 256) -> Generate:
    """The one way a task builds a Generate request: every generation flag of the run is applied here.

    `max_new_tokens` is the task's default budget; `--max-new-tokens` overrides it.
    """
    return Generate(prompt=prompt, stop=tuple(stop), max_new_tokens=cfg.max_new_tokens or max_new_tokens,
                    temperature=cfg.temperature, top_p=cfg.top_p, n=cfg.samples, seed=cfg.seed,
                    num_beams=cfg.num_beams, length_penalty=cfg.length_penalty,
                    no_repeat_ngram_size=cfg.no_repeat_ngram_size)


class Task:
    """Base class with the defaults most tasks want; override what differs."""

    name: str  # class attribute; a bridge task (lm-eval:<task>) sets it per instance
    version: ClassVar[str] = "1"
    output_type: str  # "generate" | "loglikelihood" | "classify" (several joined by |)
    metrics: ClassVar[tuple[str, ...]]
    data_source: ClassVar[str] = ""  # human-readable: hub id and local layout
    higher_is_better: ClassVar[bool] = True
    # --task-option keys this task reads ({key: what it does}); any other key is an error, not silence.
    option_keys: ClassVar[dict[str, str]] = {}
    sampling: ClassVar[bool] = False  # scores several samples per prompt (--samples n: pass@k, maj@n)

    def __init__(self, cfg: TaskConfig | None = None) -> None:
        self.cfg = cfg or TaskConfig()
        self.source_description = ""  # set by docs(): where the rows actually came from

    # --- data -------------------------------------------------------------------------
    def docs(self) -> list[Doc]:
        """Every evaluation row, each with a unique string `id`. --limit is applied by the caller."""
        raise NotImplementedError

    def check(self) -> None:
        """Reject option values this task cannot use, before any data or model loads (default: nothing to check)."""

    def option(self, key: str, default: str | None = None) -> str | None:
        """A --task-option value: `TASK.key=` (when several tasks share a run) wins over plain `key=`."""
        o = self.cfg.options
        return o.get(f"{self.name}.{key}", o.get(key, default))

    # --- requests and scoring ---------------------------------------------------------
    def supports_fewshot(self, model: ModelInfo) -> bool:
        """Whether --num-fewshot k > 0 means something for this task on this kind of model (else: an error)."""
        return False

    def fewshot_used(self) -> int | dict[str, int]:
        """The number of exemplars the prompts actually hold, for results.json."""
        return self.cfg.fewshot

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        raise NotImplementedError

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        """Per-sample record: {"metrics": {name: float}, and anything worth keeping in samples/*.jsonl}."""
        raise NotImplementedError

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Metric]:
        """Default: the mean of each per-sample metric, with its closed-form standard error."""
        names = samples[0]["metrics"].keys() if samples else self.metrics
        return {m: mean_stderr([s["metrics"][m] for s in samples]) for m in names}

    # --- training ---------------------------------------------------------------------
    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
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


def check_options(tasks: list[Task], options: dict[str, str]) -> None:
    """Every --task-option key must be read by some task of the run (plain `key` or `TASK.key`)."""
    accepted: dict[str, set[str]] = {}
    for t in tasks:
        for k in t.option_keys:
            accepted.setdefault(k, set()).add(t.name)
    for key in options:
        task, _, plain = key.rpartition(".")
        if task and any(t.name == task for t in tasks):
            if plain in next(t for t in tasks if t.name == task).option_keys:
                continue
            known = ", ".join(sorted(next(t for t in tasks if t.name == task).option_keys)) or "none"
            raise HarnessError(f"--task-option {key}: task {task} has no option {plain!r} (its options: {known})")
        if key in accepted:
            continue
        names = ", ".join(t.name for t in tasks)
        known = ", ".join(sorted(accepted)) or "none"
        raise HarnessError(f"--task-option {key}: no task of this run ({names}) reads it (their options: {known})")
