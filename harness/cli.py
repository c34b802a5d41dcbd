"""The `harness` command line. User errors print one line on stderr and exit 2."""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from harness.errors import HarnessError
from harness.models.loading import ModelSpec
from harness.options import model_options, parse_options

if TYPE_CHECKING:
    from harness.execute.ray import RayOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluate language models and their LoRA / QLoRA adapters; train those adapters.")


# Options train and the judge commands share (the model-loading options live in harness/options.py).
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hugging Face id or local directory of the base model.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps ...")]
KindOpt = Annotated[str, typer.Option("--model-kind", help="auto, causal, seq-cls or image.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; logs only.")]


@app.command()
@model_options()
def run(
    model: ModelSpec,
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated task names (see `harness tasks`).")],
    limit: Annotated[int | None, typer.Option("--limit", "-l", help="Evaluate the first N rows.")] = None,
    num_fewshot: Annotated[int | None, typer.Option(
        "--num-fewshot", "-k", help="Exemplars in the prompt (default: zero-shot; an lm-eval task's own default).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for few-shot choice and sampling.")] = 1234,
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation budget (task default if unset).")] = None,
    # None when not given: an explicit value, even the default one, wins over a task's own (an lm-eval YAML's)
    samples: Annotated[int | None, typer.Option("--samples", "-n", help="Samples per prompt (pass@k, maj@n; default 1, "
                                                "an lm-eval task's repeats).")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy (default 0, an lm-eval task's own).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (default 1, an lm-eval task's own).")] = None,
    num_beams: Annotated[int, typer.Option(help="Beam search width.")] = 1,
    length_penalty: Annotated[float, typer.Option(help="Beam search length penalty.")] = 1.0,
    no_repeat_ngram_size: Annotated[int, typer.Option(help="Forbid repeating n-grams of this size.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Local data in official layouts (e.g. DIR/gsm8k/test.jsonl).")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where run directories go.")] = Path("results"),
    run_name: Annotated[str | None, typer.Option(help="Run directory name (default: model-timestamp).")] = None,
    chat_template: Annotated[bool, typer.Option(help="Prompt instruct models through their chat template.")] = False,
    task_option: Annotated[list[str] | None, typer.Option(help="Task-specific KEY=VALUE (repeatable).")] = None,
    prompt_template: Annotated[Path | None, typer.Option(
        help="Replace the task prompt (e.g. math_verify); same as --task-option prompt_template=FILE.")] = None,
    resume: Annotated[bool, typer.Option(help="Reuse answers recorded by an earlier (killed) run.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --run-name directory.")] = False,
    quiet: QuietOpt = False,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Answer on a Ray cluster: auto (a running one, else start one here) or HOST:PORT of its head.")] = None,
    replicas: Annotated[int | None, typer.Option(
        help="Model replicas on the cluster (default: one per GPU with --device cuda, else one per "
             "--ray-cpus-per-replica CPUs).")] = None,
    ray_cpus_per_replica: Annotated[float, typer.Option(help="CPUs (and torch threads) each replica holds.")] = 1.0,
    ray_gpus_per_replica: Annotated[float | None, typer.Option(
        help="GPUs each replica holds (default 1 with --device cuda; more for the backend's tensor parallelism).")] = None,
) -> None:
    """Evaluate a base model and each of its adapters on tasks; write results/<run>/results.json."""
    from harness.evaluate import RunSpec
    from harness.evaluate import run as do_run
    from harness.registry import parse_task_list
    from harness.task import TaskConfig

    if data_dir is not None and not data_dir.is_dir():
        raise HarnessError(f"--data-dir {data_dir}: not a directory")
    if output_dir.exists() and not output_dir.is_dir():
        raise HarnessError(f"--output-dir {output_dir}: exists and is not a directory")
    if resume and overwrite:
        raise HarnessError("--resume and --overwrite exclude each other (resume keeps the answers, overwrite replaces)")
    given = (("samples", samples), ("temperature", temperature), ("top_p", top_p), ("max_new_tokens", max_new_tokens),
             ("num_fewshot", num_fewshot))
    sampling: dict[str, Any] = {k: v for k, v in given if v is not None}
    cfg = TaskConfig(seed=seed, limit=limit, data_dir=data_dir, chat_template=chat_template, **sampling,
                     num_beams=num_beams, length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                     options=parse_options(task_option), given=frozenset(sampling)).validate()
    if prompt_template is not None:
        if not prompt_template.is_file():
            raise HarnessError(f"--prompt-template {prompt_template}: file not found")
        cfg.options["prompt_template"] = str(prompt_template)
    ray_opts = _ray_options(ray, replicas, ray_cpus_per_replica, ray_gpus_per_replica)
    spec = RunSpec(
        model=model, tasks=parse_task_list(tasks), task_cfg=cfg, output_dir=output_dir, run_name=run_name, resume=resume,
        overwrite=overwrite, quiet=quiet, ray=ray_opts)
    for path in do_run(spec, argv=sys.argv):
        _print_summary(path)


def _ray_options(address: str | None, replicas: int | None, cpus: float, gpus: float | None) -> RayOptions | None:
    """The --ray flags, checked; the others without --ray are errors, not silence."""
    from harness.execute.ray import RayOptions

    if address is None:
        given = [flag for flag, value, default in (("--replicas", replicas, None), ("--ray-cpus-per-replica", cpus, 1.0),
                                                   ("--ray-gpus-per-replica", gpus, None)) if value != default]
        if given:
            raise HarnessError(f"{', '.join(given)}: only with --ray (auto or HOST:PORT of a Ray head)")
        return None
    return RayOptions(address, replicas, cpus, gpus).validate()


def _print_summary(path: Path) -> None:
    import json

    res = json.loads(path.read_text())
    print(f"{res['label']}: {path}")
    for task, entry in res["tasks"].items():
        parts = []
        for m, v in entry["metrics"].items():
            se = f" ± {v['stderr']:.4f}" if v.get("stderr") is not None else ""
            parts.append(f"{m}={v['value']:.4f}{se}")
        print(f"  {task} (n={entry['n']}): " + ", ".join(parts))


@app.command("backends")
def list_backends() -> None:
    """List every registered backend: what it answers, what it needs installed, its --backend-option keys."""
    from importlib.metadata import entry_points

    from rich.console import Console
    from rich.table import Table

    from harness.backends import GROUP

    t = Table("backend", "answers", "installed", "options", "what it is")
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        cls = ep.load()
        missing = cls.missing()
        need = "yes" if not missing else f"no: pip install 'harness[{cls.extra}]'" if cls.extra else f"no ({missing})"
        t.add_row(ep.name, ", ".join(cls.answers), need, ", ".join(sorted(cls.options)) or "-", cls.summary)
    Console(width=200).print(t)


@app.command("tasks")
def list_tasks() -> None:
    """List every registered task: metrics, output type and data source."""
    from rich.console import Console
    from rich.table import Table

    from harness.registry import make_tasks, task_names
    from harness.task import TaskConfig

    t = Table("task", "output", "metrics", "data")
    for name in task_names():
        if name.endswith(":"):
            t.add_row(name + "<task>", "any", "as the task defines", "bridge (see docs)")
            continue
        made = make_tasks(name, TaskConfig())
        if len(made) > 1:
            t.add_row(name, "group", ", ".join(m.name for m in made), "")
            continue
        d = made[0].describe()
        t.add_row(name, d["output_type"], ", ".join(d["metrics"]), d["data"])
    Console(width=200).print(t)


# Command modules that add themselves to `app` (each defines register(app)).
COMMAND_MODULES: list[str] = [
    "harness.demo",
    "harness.train.cli",
    "harness.score_cli",
    "harness.forgetting_cli",
    "harness.judge_cli",
    "harness.view_cli",
    "harness.leaderboard",
]


_registered = False


def _register_commands() -> None:
    """Add every command module to `app`, once per process (main() may run many times in one test process)."""
    global _registered
    if _registered:
        return
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    _registered = True


# Warnings known to be noise for a harness user (message regexes); anything else is shown.
NOISE = (
    r".*TypedStorage is deprecated.*",
    r".*`torch_dtype` is deprecated.*",
    r".*MatMul8bitLt: inputs will be cast.*",
    r".*is_gradient_checkpointing.*",  # PEFT calling an API transformers 5 deprecated
    r".*fan_in_fan_out is set to False.*",  # PEFT on GPT-2's Conv1D: it sets the flag itself
    r".*get_task_dict is deprecated.*",  # lm-eval 0.4.13 deprecating its own API that the bridge calls
    r".*Use TaskManager.load\(\), which returns flat dicts.*",
)


# transformers log records known to be noise: {logger: message regexes}; its other warnings still show.
HF_NOISE = {
    "transformers.utils.generic": (r"`past_key_values`/`cache_params` are deprecated",),  # its own generate's argument
}


def _filter_hf_noise() -> None:
    """Drop HF_NOISE records at the loggers that make them (a logger's filter sees its records wherever they go)."""
    import logging
    import re

    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return

    class HfNoise(logging.Filter):
        def __init__(self, patterns: tuple[str, ...]) -> None:
            super().__init__()
            self.patterns = patterns

        def filter(self, record: logging.LogRecord) -> bool:
            return not any(re.search(p, record.getMessage()) for p in self.patterns)

    hf_logging.disable_progress_bar()
    for name, patterns in HF_NOISE.items():
        logger = logging.getLogger(name)
        if not any(type(f).__name__ == "HfNoise" for f in logger.filters):  # main() may run many times in a process
            logger.addFilter(HfNoise(patterns))


def redact(text: str) -> str:
    """Secrets from the environment (API keys) never reach the terminal, even when a server echoes them."""
    import os

    for name, value in os.environ.items():
        if value and len(value) >= 8 and any(s in name.upper() for s in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
            text = text.replace(value, "***")
    return text


def main() -> None:
    """Console entry point: HarnessError -> one line on stderr, exit 2."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Known library chatter that says nothing about the user's run; every other warning still shows.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    _filter_hf_noise()
    _register_commands()
    interrupted: list[int] = []
    default_sigint = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    if default_sigint is signal.default_int_handler:  # not where SIGINT is ignored (nohup, a background job)
        signal.signal(signal.SIGINT, on_sigint)
    try:
        # Standalone mode: typer itself turns usage errors (unknown flag or command, missing option, a value of the
        # wrong type) into its usage message and exit 2, with whichever click it ships.
        app(prog_name="harness")
    except HarnessError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception:
        # Ctrl-C reaches an engine's worker processes too (the whole foreground group); when one dies first, the
        # error that surfaces here is its death, not the KeyboardInterrupt: still an interrupted run.
        if interrupted:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
