"""TrainSpec: every training option in one validated dataclass, so the CLI, sweeps and harness_train.json agree.

Sweep grids and `--set KEY=VALUE` go through `TrainSpec.with_overrides`, which parses strings to the
field's type; validation turns bad values into one-line HarnessErrors naming the flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

METHODS = ("lora", "qlora", "full")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "constant")
BIASES = ("none", "all", "lora_only")
KINDS = ("auto", "causal", "seq-cls", "image")
DTYPES = ("float32", "fp32", "float16", "fp16", "bfloat16", "bf16", "auto")
ALIASES = {"lr": "lr", "learning_rate": "lr", "rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
           "steps": "max_steps", "bs": "batch_size", "accum": "grad_accum", "gradient_accumulation_steps": "grad_accum"}


@dataclass
class TrainSpec:
    """One training run. Defaults are small-model friendly; the CLI exposes every field."""

    model: str
    task: str
    output_dir: Path
    method: str = "lora"
    # LoRA
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: str | None = None  # comma-separated names, "all-linear", or None = PEFT's default for the arch
    bias: str = "none"
    use_rslora: bool = False
    use_dora: bool = False
    modules_to_save: str | None = None  # comma-separated
    # optimisation
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    scheduler: str = "linear"
    num_cycles: int = 1  # cosine_with_restarts
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping
    optimizer: str = "adamw"
    seed: int = 42
    # data
    max_length: int = 512
    packing: bool = False
    chat_template: bool = False
    data_dir: Path | None = None
    task_options: dict[str, str] = field(default_factory=dict)
    train_split: str = "train"
    train_limit: int | None = None
    # evaluation, early stopping, checkpoints
    eval_every: int | None = None  # optimizer steps; None = evaluate only at the end when eval_limit is set
    eval_limit: int | None = None
    eval_max_new_tokens: int | None = None
    metric: str | None = None  # default: the task's first metric
    patience: int | None = None  # evaluations without improvement before stopping
    save_every: int | None = None  # optimizer steps
    save_total_limit: int = 2
    resume: bool = False
    overwrite: bool = False  # replace what -o already holds (a finished run, checkpoints)
    # model loading
    dtype: str = "float32"
    bnb_4bit_compute_dtype: str = "float32"
    gradient_checkpointing: bool | None = None  # None = on for qlora only
    device: str = "cpu"
    model_kind: str = "auto"
    # Engine of the evaluations after training (sweep points); mid-run evaluation uses the model being trained (hf).
    eval_backend: str = "hf"
    eval_backend_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_labels: int | None = None
    log_every: int = 10
    quiet: bool = False

    def validate(self) -> TrainSpec:
        def bad(flag: str, why: str) -> HarnessError:
            return HarnessError(f"--{flag.replace('_', '-')}: {why}")

        if self.method not in METHODS:
            raise bad("method", f"unknown method {self.method!r} (use {', '.join(METHODS)})")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"unknown optimizer {self.optimizer!r} (use {', '.join(OPTIMIZERS)})")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"unknown scheduler {self.scheduler!r} (use {', '.join(SCHEDULERS)})")
        if self.bias not in BIASES:
            raise bad("bias", f"unknown bias mode {self.bias!r} (use {', '.join(BIASES)})")
        if self.model_kind not in KINDS:
            raise bad("model_kind", f"unknown kind {self.model_kind!r} (use {', '.join(KINDS)})")
        for name in ("dtype", "bnb_4bit_compute_dtype"):
            if getattr(self, name) not in DTYPES:
                raise bad(name, f"unknown dtype {getattr(self, name)!r} (use float32, float16, bfloat16 or auto)")
        for name in ("r", "batch_size", "grad_accum", "max_length", "num_cycles", "save_total_limit", "log_every"):
            if getattr(self, name) <= 0:
                raise bad(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("max_steps", "train_limit", "eval_every", "eval_limit", "patience", "save_every", "num_labels",
                     "eval_max_new_tokens"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise bad(name, f"must be > 0, got {v}")
        if self.lr <= 0:
            raise bad("lr", f"must be > 0, got {self.lr}")
        if self.alpha <= 0:
            raise bad("alpha", f"must be > 0, got {self.alpha}")
        if self.epochs <= 0 and self.max_steps is None:
            raise bad("epochs", f"must be > 0, got {self.epochs}")
        if not 0 <= self.dropout < 1:
            raise bad("dropout", f"must be in [0, 1), got {self.dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise bad("warmup_steps", "warmup steps, weight decay and max grad norm must be >= 0")
        if self.patience is not None and self.eval_every is None:
            raise bad("patience", "early stopping needs --eval-every N (evaluations to compare)")
        if self.method == "full" and (self.use_dora or self.use_rslora):
            raise bad("method", "--use-dora / --use-rslora apply to lora and qlora only")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise bad("data_dir", f"{self.data_dir}: not a directory")
        if self.resume and self.overwrite:
            raise bad("overwrite", "--overwrite replaces what -o holds, --resume continues it: pass one of them")
        return self

    # --- overrides from strings (sweep grids, --set) ------------------------------------------
    def with_overrides(self, overrides: dict[str, str], flag: str = "--set") -> TrainSpec:
        types = {f.name: f.type for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, raw in overrides.items():
            name = ALIASES.get(key, key).replace("-", "_")
            if name not in types or name in ("model", "task", "output_dir", "task_options"):
                raise HarnessError(f"{flag} {key}={raw}: unknown training option {key!r}")
            changes[name] = parse_value(str(types[name]), raw, f"{flag} {key}")
        try:
            return dataclasses.replace(self, **changes).validate()
        except HarnessError as e:  # the flag the bad value came from, then what is wrong with it
            given = " ".join(f"{k}={v}" for k, v in overrides.items())
            raise HarnessError(f"{flag} {given}: {e}") from None

    def hyperparameters(self) -> dict[str, Any]:
        """What determines the trained weights (written to harness_train.json, compared on --resume)."""
        skip = {"output_dir", "resume", "overwrite", "quiet", "log_every", "save_every", "save_total_limit", "device", "data_dir",
                "eval_backend", "eval_backend_options"}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items() if k not in skip}

    def target_list(self) -> list[str] | str | None:
        if self.target_modules is None:
            return None
        if self.target_modules.strip() == "all-linear":
            return "all-linear"
        return [t.strip() for t in self.target_modules.replace("+", ",").split(",") if t.strip()]

    def save_list(self) -> list[str] | None:
        if not self.modules_to_save:
            return None
        return [t.strip() for t in self.modules_to_save.replace("+", ",").split(",") if t.strip()]


def parse_value(type_name: str, raw: str, where: str) -> Any:
    """A string from a grid or --set, as the field's type (the dataclass annotations are strings)."""
    t = type_name.replace(" ", "")
    if raw.lower() in ("none", "null") and "None" in t:
        return None
    try:
        if t.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
        if t.startswith("Path"):
            return Path(raw)
    except ValueError:
        raise HarnessError(f"{where}: {raw!r} is not a valid {t.split('|')[0]}") from None
    return raw
