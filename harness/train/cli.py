"""`harness train` and `harness sweep`: every TrainSpec field as a flag; `--set KEY=VALUE` for the rest."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from harness.cli import DeviceOpt, DtypeOpt, KindOpt, ModelOpt, QuietOpt
from harness.options import BackendOpt, BackendOptionOpt, backend_choice, parse_options

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Task whose training examples (and metric) to use.")]
MethodOpt = Annotated[str, typer.Option(help="lora, qlora (4-bit NF4 + double quant) or full.")]
ROpt = Annotated[int, typer.Option("--r", help="LoRA rank.")]
AlphaOpt = Annotated[float, typer.Option(help="LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with --use-rslora).")]
DropoutOpt = Annotated[float, typer.Option(help="LoRA dropout.")]
TargetsOpt = Annotated[str | None, typer.Option(help="Comma-separated module names or all-linear (default: PEFT's "
                                                     "per-architecture choice; conv+linear for image models).")]
LROpt = Annotated[float, typer.Option("--lr", help="Peak learning rate.")]
EpochsOpt = Annotated[float, typer.Option(help="Passes over the training examples (ignored with --max-steps).")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps (overrides --epochs).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Examples per micro-batch.")]
AccumOpt = Annotated[int, typer.Option(help="Micro-batches per optimizer step.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any other training option KEY=VALUE (repeatable), "
                                                               "e.g. --set use_dora=true --set max_length=256.")]
TaskOptionOpt = Annotated[list[str] | None, typer.Option(help="Task-specific KEY=VALUE (repeatable).")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Local data in official layouts.")]
EvalLimitOpt = Annotated[int | None, typer.Option(help="Evaluate on the first N rows during/after training.")]
MaxNewOpt = Annotated[int | None, typer.Option(help="Generation budget for evaluation (task default if unset).")]
ChatOpt = Annotated[bool, typer.Option(help="Render prompts through the tokenizer's chat template.")]


def train(
    model: ModelOpt,
    task: TaskOpt,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Checkpoint directory to write.")],
    method: MethodOpt = "lora",
    r: ROpt = 8,
    alpha: AlphaOpt = 16.0,
    dropout: DropoutOpt = 0.05,
    target_modules: TargetsOpt = None,
    bias: Annotated[str, typer.Option(help="none, all or lora_only.")] = "none",
    use_rslora: Annotated[bool, typer.Option(help="Rank-stabilised LoRA scaling.")] = False,
    use_dora: Annotated[bool, typer.Option(help="Weight-decomposed LoRA (DoRA).")] = False,
    modules_to_save: Annotated[str | None, typer.Option(help="Comma-separated modules trained in full.")] = None,
    lr: LROpt = 2e-4,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = 8,
    grad_accum: AccumOpt = 1,
    warmup_steps: Annotated[int, typer.Option(help="Linear warmup steps.")] = 0,
    warmup_ratio: Annotated[float, typer.Option(help="Warmup as a share of all steps (if --warmup-steps is 0).")] = 0.0,
    scheduler: Annotated[str, typer.Option(help="linear, cosine, cosine_with_restarts or constant.")] = "linear",
    num_cycles: Annotated[int, typer.Option(help="Restarts for cosine_with_restarts.")] = 1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (matrices only).")] = 0.0,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping; 0 = off.")] = 1.0,
    optimizer: Annotated[str, typer.Option(help="adamw, adamw_8bit or paged_adamw_8bit.")] = "adamw",
    seed: Annotated[int, typer.Option(help="Seed for initialisation, data order and dropout.")] = 42,
    max_length: Annotated[int, typer.Option(help="Tokens per training sequence.")] = 512,
    packing: Annotated[bool, typer.Option(help="Pack causal examples into max-length sequences.")] = False,
    chat_template: ChatOpt = False,
    data_dir: DataDirOpt = None,
    task_option: TaskOptionOpt = None,
    train_split: Annotated[str, typer.Option(help="Split the task's training examples come from.")] = "train",
    train_limit: Annotated[int | None, typer.Option(help="Use the first N training examples.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate the task every N steps (and at the end).")] = None,
    eval_limit: EvalLimitOpt = None,
    eval_max_new_tokens: MaxNewOpt = None,
    metric: Annotated[str | None, typer.Option(help="Metric for evaluation / early stopping (task's first).")] = None,
    patience: Annotated[int | None, typer.Option(help="Stop after N evaluations without improvement; "
                                                      "keep the best weights.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (for --resume).")] = None,
    save_total_limit: Annotated[int, typer.Option(help="Periodic checkpoints kept.")] = 2,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in -o.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the training run -o already holds.")] = False,
    gradient_checkpointing: Annotated[bool | None, typer.Option(help="Recompute activations (default: qlora only).")
                                      ] = None,
    dtype: DtypeOpt = "float32",
    bnb_4bit_compute_dtype: Annotated[str, typer.Option(help="Compute dtype of 4-bit layers (qlora).")] = "float32",
    device: DeviceOpt = "cpu",
    model_kind: KindOpt = "auto",
    num_labels: Annotated[int | None, typer.Option(help="Classifier outputs (default: from the task's labels).")] = None,
    log_every: Annotated[int, typer.Option(help="Print the loss every N steps.")] = 10,
    backend: BackendOpt = "hf",
    backend_option: BackendOptionOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune MODEL on TASK's training split; writes a PEFT adapter (or full model) + harness_train.json."""
    from harness.errors import HarnessError
    from harness.train.spec import TrainSpec
    from harness.train.trainer import train as do_train

    engine, _ = backend_choice(backend, backend_option)
    if engine != "hf":
        raise HarnessError(f"--backend {engine}: train evaluates the model it is training, in this process (hf only); "
                           f"evaluate the saved adapter with `harness run --backend {engine}`")

    spec = TrainSpec(
        model=model, task=task, output_dir=output_dir, method=method, r=r, alpha=alpha, dropout=dropout,
        target_modules=target_modules, bias=bias, use_rslora=use_rslora, use_dora=use_dora,
        modules_to_save=modules_to_save, lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        grad_accum=grad_accum, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio, scheduler=scheduler,
        num_cycles=num_cycles, weight_decay=weight_decay, max_grad_norm=max_grad_norm, optimizer=optimizer, seed=seed,
        max_length=max_length, packing=packing, chat_template=chat_template, data_dir=data_dir,
        task_options=parse_options(task_option), train_split=train_split, train_limit=train_limit,
        eval_every=eval_every, eval_limit=eval_limit, eval_max_new_tokens=eval_max_new_tokens, metric=metric,
        patience=patience, save_every=save_every, save_total_limit=save_total_limit, resume=resume,
        overwrite=overwrite, gradient_checkpointing=gradient_checkpointing, dtype=dtype,
        bnb_4bit_compute_dtype=bnb_4bit_compute_dtype,
        device=device, model_kind=model_kind, num_labels=num_labels, log_every=log_every, quiet=quiet,
    ).validate().with_overrides(parse_options(set_, "--set"))
    out = do_train(spec)
    print(out)


def sweep(
    model: ModelOpt,
    task: TaskOpt,
    grid: Annotated[str, typer.Option(help='Grid, e.g. "r=1,2,4;lr=1e-4,2e-4" (any training option).')],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Sweep directory.")],
    method: MethodOpt = "lora",
    r: ROpt = 8,
    alpha: AlphaOpt = 16.0,
    target_modules: TargetsOpt = None,
    lr: LROpt = 2e-4,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = 8,
    grad_accum: AccumOpt = 1,
    alpha_ratio: Annotated[float | None, typer.Option(help="Set alpha = ratio * r at every grid point.")] = None,
    data_dir: DataDirOpt = None,
    task_option: TaskOptionOpt = None,
    chat_template: ChatOpt = False,
    limit: Annotated[int | None, typer.Option("--limit", "-l", help="Evaluate each point on the first N rows.")] = None,
    max_new_tokens: MaxNewOpt = None,
    eval_batch_size: Annotated[int, typer.Option(help="Requests per model call when evaluating.")] = 8,
    with_base: Annotated[bool, typer.Option(help="Also evaluate the base model (the leaderboard's reference).")] = True,
    resume: Annotated[bool, typer.Option(help="Finish the sweep in -o: keep finished points, resume the rest.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the sweep -o already holds.")] = False,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    model_kind: KindOpt = "auto",
    backend: BackendOpt = "hf",
    backend_option: BackendOptionOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train and evaluate every grid point (with --resume, finished points are skipped); leaderboard + metric plots."""
    from harness.train.spec import TrainSpec
    from harness.train.sweep import run_sweep

    base = TrainSpec(model=model, task=task, output_dir=output_dir, method=method, r=r, alpha=alpha,
                     target_modules=target_modules, lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                     grad_accum=grad_accum, data_dir=data_dir, task_options=parse_options(task_option),
                     chat_template=chat_template, eval_max_new_tokens=max_new_tokens, dtype=dtype, device=device,
                     model_kind=model_kind, quiet=quiet).validate().with_overrides(parse_options(set_, "--set"))
    engine, engine_options = backend_choice(backend, backend_option)
    base = replace(base, eval_backend=engine, eval_backend_options=engine_options)
    summary = run_sweep(base, grid, output_dir, limit=limit, eval_batch_size=eval_batch_size, with_base=with_base,
                        alpha_ratio=alpha_ratio, argv=sys.argv, resume=resume, overwrite=overwrite)
    print(summary.read_text())


def register(app: typer.Typer) -> None:
    app.command(name="train")(train)
    app.command(name="sweep")(sweep)
