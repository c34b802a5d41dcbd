"""The training loop shared by causal SFT and classification: plain PyTorch, exact resume.

Data order is a pure function of (seed, epoch), so optimizer step s always sees the same micro-batches.
A checkpoint holds the trainable weights, optimizer, scheduler and every RNG state; resuming from
step s therefore reproduces the uninterrupted run bit for bit. Evaluation restores the RNG state it
found, so evaluating (or not) never changes what training does next.
"""

from __future__ import annotations

import functools
import json
import math
import random
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from harness.errors import HarnessError
from harness.progress import progress_bar
from harness.train.outdir import CKPT_PREFIX
from harness.train.spec import TrainSpec

BEST = "checkpoint-best"


class Data(Protocol):
    """What sft.py and classify.py hand the loop."""

    features: list[dict[str, Any]]

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]: ...
    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...  # summed over items
    def count(self, batch: dict[str, torch.Tensor]) -> int: ...  # items the loss sums over
    def tokens(self, batch: dict[str, torch.Tensor]) -> int: ...  # for throughput


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    loss_curve: list[list[float]] = field(default_factory=list)  # [step, mean loss of that step]
    evals: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    tokens: int = 0
    train_seconds: float = 0.0


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(n, generator=g).tolist())


def micro_batch(data: Data, spec: TrainSpec, index: int) -> dict[str, torch.Tensor]:
    """Micro-batch number `index` counted from the start of training (epochs wrap around)."""
    n = len(data.features)
    per_epoch = math.ceil(n / spec.batch_size)
    epoch, i = divmod(index, per_epoch)
    order = epoch_order(n, spec.seed, epoch)
    rows = [data.features[j] for j in order[i * spec.batch_size : (i + 1) * spec.batch_size]]
    return data.collate(rows)


def total_steps(n_features: int, spec: TrainSpec) -> int:
    if spec.max_steps is not None:
        return spec.max_steps
    per_epoch = math.ceil(n_features / spec.batch_size)
    return max(1, math.ceil(spec.epochs * per_epoch / spec.grad_accum))


def build_optimizer(model: Any, spec: TrainSpec) -> torch.optim.Optimizer:
    """Weight decay on matrices only (not biases or norms), as is usual for AdamW."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise HarnessError("nothing to train: the model has no trainable parameters (check --target-modules)")
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr)
    import bitsandbytes as bnb

    cls = bnb.optim.AdamW8bit if spec.optimizer == "adamw_8bit" else bnb.optim.PagedAdamW8bit
    return cls(groups, lr=spec.lr)


def build_scheduler(opt: torch.optim.Optimizer, spec: TrainSpec, steps: int) -> Any:
    from transformers import get_scheduler

    warmup = spec.warmup_steps or int(spec.warmup_ratio * steps)
    name = "constant_with_warmup" if spec.scheduler == "constant" else spec.scheduler
    extra = {"num_cycles": spec.num_cycles} if spec.scheduler == "cosine_with_restarts" else None
    return get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=steps, scheduler_specific_kwargs=extra)


# --- checkpoints ---------------------------------------------------------------------------------


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: Any, state: dict[str, torch.Tensor], where: Path) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise HarnessError(f"{where}: checkpoint has weights this model lacks ({missing[0]}); was it made by another run?")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device))


def rng_state() -> dict[str, Any]:
    import numpy as np

    s = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(out: Path, name: str, model: Any, opt: Any, sched: Any, state: TrainState, spec: TrainSpec,
                    save_model: Callable[[Path], None] | None) -> Path:
    """Write to a temporary directory, then rename: a killed run never leaves a half checkpoint."""
    final = out / name
    tmp = out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(trainable_state(model), tmp / "trainable.pt")
    if opt is not None:
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state()},
                   tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"state": asdict(state), "hyperparameters":
                                                        spec.hyperparameters()}, default=str))
    if save_model is not None:
        save_model(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def checkpoints(out: Path) -> list[Path]:
    found = [p for p in out.glob(f"{CKPT_PREFIX}*") if p.is_dir() and p.name[len(CKPT_PREFIX):].isdigit()
             and (p / "trainer_state.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(CKPT_PREFIX):]))


def prune_checkpoints(out: Path, keep: int) -> None:
    for p in checkpoints(out)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def resume_from(out: Path, model: Any, opt: Any, sched: Any, spec: TrainSpec) -> TrainState:
    found = checkpoints(out)
    if not found:
        raise HarnessError(f"--resume: no {CKPT_PREFIX}<step> directory in {out}")
    ckpt = found[-1]
    saved = json.loads((ckpt / "trainer_state.json").read_text())
    now = json.loads(json.dumps(spec.hyperparameters(), default=str))
    diff = [k for k in now if saved["hyperparameters"].get(k) != now[k]]
    if diff:
        k = diff[0]
        raise HarnessError(f"--resume {ckpt}: option {k} was {saved['hyperparameters'].get(k)!r}, now {now[k]!r}; "
                           "resume with the same options")
    load_trainable(model, torch.load(ckpt / "trainable.pt"), ckpt)
    blob = torch.load(ckpt / "optimizer.pt", weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"])
    return TrainState(**saved["state"])


# --- the loop ------------------------------------------------------------------------------------


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_loop(model: Any, data: Data, spec: TrainSpec, out: Path, evaluate: Callable[[], float] | None = None,
               higher_is_better: bool = True, save_model: Callable[[Path], None] | None = None) -> TrainState:
    """Run (or resume) training; returns the final state. With --patience, the best weights are restored at the end."""
    if not data.features:
        raise HarnessError(f"task {spec.task}: no training examples")
    steps = total_steps(len(data.features), spec)
    opt = build_optimizer(model, spec)
    sched = build_scheduler(opt, spec, steps)
    state = TrainState(total_steps=steps)
    if spec.resume:
        state = resume_from(out, model, opt, sched, spec)
        _log(f"resumed from step {state.step} of {steps}", spec.quiet)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]

    def run_eval() -> None:
        assert evaluate is not None
        saved_rng = rng_state()
        model.eval()
        value = float(evaluate())
        model.train()
        set_rng_state(saved_rng)
        better = state.best_metric is None or (value > state.best_metric if higher_is_better else value < state.best_metric)
        state.evals.append({"step": state.step, "metric": spec.metric, "value": value})
        _log(f"step {state.step}: {spec.metric} = {value:.4f}", spec.quiet)
        if better:
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            save_checkpoint(out, BEST, model, None, None, state, spec, None)
        else:
            state.bad_evals += 1
            if spec.patience is not None and state.bad_evals >= spec.patience:
                state.stopped_early = True

    try:
        with progress_bar(f"train {spec.method} · {spec.task}", total=steps, quiet=spec.quiet) as advance:
            advance(state.step)
            while state.step < steps and not state.stopped_early:
                mean = _step(model, data, spec, opt, sched, state, params)
                state.loss_curve.append([state.step, round(mean, 6)])
                if spec.log_every and state.step % spec.log_every == 0:
                    _log(f"step {state.step}/{steps}: loss {mean:.4f}, lr {sched.get_last_lr()[0]:.2e}", spec.quiet)
                if evaluate is not None and spec.eval_every and state.step % spec.eval_every == 0:
                    run_eval()
                if spec.save_every and state.step % spec.save_every == 0:
                    save_checkpoint(out, f"{CKPT_PREFIX}{state.step}", model, opt, sched, state, spec, save_model)
                    prune_checkpoints(out, spec.save_total_limit)
                advance(1)
    except KeyboardInterrupt:  # say what a rerun will do: continue from a checkpoint, or start again
        print(interrupted_note(out, spec, state.step), file=sys.stderr)
        raise
    if evaluate is not None and (not state.evals or state.evals[-1]["step"] != state.step):
        run_eval()  # the final weights are always evaluated
    if spec.patience is not None and state.best_step is not None and state.best_step != state.step:
        load_trainable(model, torch.load(out / BEST / "trainable.pt"), out / BEST)
        _log(f"restored the best weights (step {state.best_step}, {spec.metric} = {state.best_metric:.4f})", spec.quiet)
    return state


def _step(model: Any, data: Data, spec: TrainSpec, opt: Any, sched: Any, state: TrainState,
          params: list[torch.nn.Parameter]) -> float:
    """One optimizer step over grad_accum micro-batches; returns its mean loss per item."""
    t0 = time.perf_counter()
    start = state.step * spec.grad_accum
    window = [micro_batch(data, spec, start + j) for j in range(spec.grad_accum)]
    n_items = max(1, sum(data.count(b) for b in window))
    total = 0.0
    for b in window:
        b = {k: v.to(spec.device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
        loss = data.loss(model, b)
        (loss / n_items).backward()
        total += float(loss.detach())
        state.tokens += data.tokens(b)
    if spec.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    state.step += 1
    state.train_seconds += time.perf_counter() - t0
    mean = total / n_items
    if not math.isfinite(mean):
        raise HarnessError(f"training diverged at step {state.step} (loss {mean}); lower --lr or raise --warmup-steps")
    return mean

def interrupted_note(out: Path, spec: TrainSpec, step: int) -> str:
    """What a rerun with --resume will do, printed when training is interrupted (Ctrl-C)."""
    found = checkpoints(out)
    if found:
        return f"interrupted at step {step}: --resume continues from {found[-1]}"
    if spec.save_every:
        return (f"interrupted at step {step}, before the first checkpoint (step {spec.save_every}): no checkpoint has "
                "been written yet, so --resume will start from scratch")
    return (f"interrupted at step {step}: no checkpoint is written without --save-every N, so --resume will start "
            "from scratch")


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr)
