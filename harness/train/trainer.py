"""`harness train` end to end: task examples -> model (+ LoRA / QLoRA) -> loop -> adapter + harness_train.json.

The task plugin that evaluates also supplies the training examples, and mid-training evaluation runs
that same task through `evaluate_task` on the model being trained, so formats cannot drift.
"""

from __future__ import annotations

import random
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from harness.data import rows_hash
from harness.errors import HarnessError
from harness.models.loading import (
    ModelSpec,
    Variant,
    _wrapper,
    detect_kind,
    disable_avx512bf16_repack,
    load_base,
    load_config,
)
from harness.results import atomic_write_json, header
from harness.task import ModelInfo, Task, TaskConfig, check_options
from harness.train.loop import checkpoints, peak_memory_mb, train_loop
from harness.train.outdir import FINISHED, check_train_dir, clear
from harness.train.spec import TrainSpec


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def task_config(spec: TrainSpec) -> TaskConfig:
    """The evaluation settings of mid-run evaluation (the model kind reaches the task as ModelInfo, not here)."""
    return TaskConfig(data_dir=spec.data_dir, limit=spec.eval_limit, chat_template=spec.chat_template,
                      max_new_tokens=spec.eval_max_new_tokens, options=dict(spec.task_options))


def make_task(spec: TrainSpec) -> Task:
    from harness.registry import make_tasks

    made = make_tasks(spec.task, task_config(spec), flag="--task")
    if len(made) != 1:
        raise HarnessError(f"--task {spec.task}: a group of {len(made)} tasks; train on one member "
                           f"({', '.join(t.name for t in made[:5])}...)")
    return made[0]


def wrap_model(model: Any, kind: str, spec: TrainSpec) -> Any:
    """LoRA / QLoRA through PEFT, or every weight trainable for `full`."""
    gc = spec.gradient_checkpointing if spec.gradient_checkpointing is not None else spec.method == "qlora"
    if spec.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
        disable_avx512bf16_repack(model)
    elif gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targets: Any = spec.target_list()
    to_save = spec.save_list()
    task_type = {"causal": "CAUSAL_LM", "seq-cls": "SEQ_CLS"}.get(kind)
    if kind == "seq-cls" and to_save is None and any(n.split(".")[-1] == "pooler" for n, _ in model.named_modules()):
        # PEFT trains the head (classifier / score) in full; BERT-style poolers feed it and train with it:
        # sentence-transformers checkpoints (all-MiniLM-L6-v2) ship without one, so it starts random.
        to_save = ["pooler"]
    if kind == "image":
        from harness.train.classify import image_lora_targets

        auto_targets, heads = image_lora_targets(model)
        targets = targets or auto_targets
        to_save = to_save or heads
    check_modules_to_save(model, spec)
    bias: Any = spec.bias  # checked by TrainSpec; PEFT types it as a Literal
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha,  # type: ignore[arg-type]  # PEFT types alpha as int; floats work
                     lora_dropout=spec.dropout, target_modules=targets, bias=bias,
                     use_rslora=spec.use_rslora, use_dora=spec.use_dora, modules_to_save=to_save, task_type=task_type)
    try:
        with warnings.catch_warnings():  # PEFT's chatter about its own choices; nothing the user can act on
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out is set to False.*", category=UserWarning)
            model = get_peft_model(model, cfg)
    except ValueError as e:
        raise HarnessError(f"--target-modules: {str(e).splitlines()[0][:200]}") from None
    if spec.method == "qlora":
        disable_avx512bf16_repack(model)
    return model


def check_modules_to_save(model: Any, spec: TrainSpec) -> None:
    """PEFT silently ignores a --modules-to-save name the model lacks; a typo would train nothing extra."""
    names = [n for n, _ in model.named_modules()]
    missing = [m for m in spec.save_list() or [] if not any(n == m or n.endswith("." + m) for n in names)]
    if missing:
        raise HarnessError(f"--modules-to-save: no module named {missing[0]!r} in {spec.model}")


def count_params(model: Any) -> tuple[int, int]:
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()  # counts packed 4-bit weights at their real size
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())


def build_data(kind: str, examples: list[dict[str, Any]], processor: Any, spec: TrainSpec, regression: bool) -> Any:
    if kind == "causal":
        from harness.train.sft import SFTData

        return SFTData(examples, processor, spec.max_length, spec.packing, spec.seed)
    if kind == "seq-cls":
        from harness.train.classify import TextClassifyData

        return TextClassifyData(examples, processor, spec.max_length, regression)
    from harness.train.classify import ImageClassifyData

    return ImageClassifyData(examples, processor)


def check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise HarnessError(f"--device {device}: not a device (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise HarnessError(f"--device {device}: MPS is not available on this machine")


def resolve(spec: TrainSpec) -> tuple[ModelSpec, str, Task]:
    """The model's loading spec, its kind and the task: checked (config only, no weights) before anything is written."""
    check_device(spec.device)
    mspec = ModelSpec(model=spec.model, kind=spec.model_kind, load_in_4bit=spec.method == "qlora",
                      bnb_4bit_compute_dtype=spec.bnb_4bit_compute_dtype, dtype=spec.dtype, device=spec.device,
                      batch_size=spec.batch_size, num_labels=spec.num_labels)
    kind = detect_kind(mspec, load_config(mspec))
    task = make_task(spec)
    check_options([task], spec.task_options)  # a mistyped --task-option would otherwise be ignored silently
    return mspec, kind, task


def no_checkpoint_note(out: Path, spec: TrainSpec) -> str:
    if spec.save_every:
        return (f"--resume: no checkpoint has been written in {out} yet (the first comes at step {spec.save_every}); "
                "training from scratch")
    return (f"--resume: {out} holds no checkpoint (they are written only with --save-every N); training from scratch")


def prepare_output(spec: TrainSpec) -> tuple[TrainSpec, bool] | None:
    """Check -o against --resume / --overwrite: (spec to run, whether -o must be emptied first), or None if done."""
    out = Path(spec.output_dir)
    found = checkpoints(out) if out.is_dir() else []
    must_clear = check_train_dir(out, spec.resume, spec.overwrite, bool(found))
    if spec.resume and (out / FINISHED).exists():
        _log(f"{out} already holds a finished run ({FINISHED}); nothing to resume", spec.quiet)
        return None
    if spec.resume and not found:
        print(no_checkpoint_note(out, spec), file=sys.stderr)
        spec = replace(spec, resume=False)
    return spec, must_clear


def training_examples(spec: TrainSpec, task: Task, kind: str) -> list[dict[str, Any]]:
    examples = task.train_examples(spec.train_split, ModelInfo(kind))
    if spec.train_limit is not None:
        examples = examples[: spec.train_limit]
    if not examples:
        raise HarnessError(f"task {task.name}: split {spec.train_split!r} has no training examples")
    return examples


def check_metric(spec: TrainSpec, task: Task) -> str:
    """The metric evaluations and early stopping use (the task's first unless --metric names another)."""
    metric = spec.metric or task.metrics[0]
    if metric not in task.metrics:
        raise HarnessError(f"--metric {metric}: task {task.name} reports {', '.join(task.metrics)}")
    return metric


def evaluator(eval_tasks: list[tuple[Task, list[Any], str]] | None, spec: TrainSpec, mspec: ModelSpec, model: Any,
              processor: Any, identity: dict[str, Any], kind: str) -> tuple[Callable[[], float] | None, bool]:
    """(evaluate the model being trained through the task itself, whether higher is better), or (None, True)."""
    if eval_tasks is None:
        return None, True
    etask, docs, dhash = eval_tasks[0]
    wrapper = _wrapper(kind)
    eval_spec = replace(mspec, batch_size=max(spec.batch_size, 8))
    ident = {**identity, "adapter": "in-training"}

    def evaluate() -> float:
        from harness.evaluate import evaluate_task

        if spec.method == "qlora":
            disable_avx512bf16_repack(model)
        variant = Variant("in-training", wrapper(model, processor, ident, eval_spec), ident)
        entry, _ = evaluate_task(variant, etask, docs, dhash, None, False, True)
        return entry["metrics"][str(spec.metric)]["value"]

    return evaluate, etask.higher_is_better


def train(spec: TrainSpec) -> Path:
    """Train, write the checkpoint directory, return it."""
    spec.validate()
    t_start = time.time()
    out = Path(spec.output_dir)
    prepared = prepare_output(spec)
    if prepared is None:
        return out
    spec, must_clear = prepared
    mspec, kind, task = resolve(spec)
    examples = training_examples(spec, task, kind)
    spec = replace(spec, metric=check_metric(spec, task))
    metric = spec.metric
    regression = False
    if kind != "causal":
        from harness.train.classify import label_space

        n_labels, regression = label_space(examples, spec.num_labels or getattr(task, "num_labels", None))
        mspec.num_labels = n_labels
    evaluating = spec.eval_every is not None or spec.eval_limit is not None
    eval_tasks = None
    if evaluating:  # load evaluation data before the model: data errors surface first
        from harness.evaluate import load_tasks

        eval_tasks = load_tasks([spec.task], task_config(spec))

    seed_everything(spec.seed)  # classifier heads and LoRA A matrices are initialised from it
    hf_model, processor, kind, identity = load_base(mspec)
    if kind == "causal" and processor.pad_token_id is None:
        processor.pad_token = processor.eos_token
    if regression:
        hf_model.config.problem_type = "regression"
    model = wrap_model(hf_model, kind, spec)
    trainable, total = count_params(model)
    _log(f"{spec.method}: {trainable:,} trainable of {total:,} parameters ({100 * trainable / max(total, 1):.3f}%)",
         spec.quiet)
    data = build_data(kind, examples, processor, spec, regression)

    evaluate, higher = evaluator(eval_tasks, spec, mspec, model, processor, identity, kind)

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        processor.save_pretrained(path)

    if must_clear:  # --overwrite (or --resume with nothing to resume): every input is valid, replace the old run
        clear(out)
    state = train_loop(model, data, spec, out, evaluate, higher, save_model if spec.method != "full" else None)
    save_model(out)
    record = {
        **header(),
        "base": {k: v for k, v in identity.items()},
        "task": {"name": task.name, "version": task.version, "kind": kind, "metric": metric,
                 "higher_is_better": higher},
        "method": spec.method,
        "hyperparameters": spec.hyperparameters(),
        "data": {"split": spec.train_split, "examples": len(examples), "sequences": len(data.features),
                 "hash": rows_hash(examples), "source": task.source_description or task.data_source},
        "labels": {"num_labels": mspec.num_labels, "regression": regression} if kind != "causal" else None,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": trainable / max(total, 1),
        "peak_memory_mb": round(peak_memory_mb(spec.device), 1),
        "wall_time_s": round(time.time() - t_start, 2),
        "train_time_s": round(state.train_seconds, 2),
        "tokens": state.tokens,
        "tokens_per_s": round(state.tokens / max(state.train_seconds, 1e-9), 1),
        "steps": state.step,
        "total_steps": state.total_steps,
        "stopped_early": state.stopped_early,
        "final_weights": f"best (step {state.best_step})" if spec.patience and state.best_step not in (None, state.step)
        else "last",
        "best": {"step": state.best_step, "value": state.best_metric} if state.evals else None,
        "evals": state.evals,
        "loss_curve": state.loss_curve,
    }
    atomic_write_json(out / FINISHED, record)  # written last: its presence marks a finished run
    first, last = state.loss_curve[0][1], state.loss_curve[-1][1]
    _log(f"trained {state.step} steps in {record['wall_time_s']:.0f}s, loss {first:.3f} -> {last:.3f}; wrote {out}",
         spec.quiet)
    return out


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr)
