"""The model options, declared once for every command that loads a model (run, forgetting, generate, train, sweep).

`@model_options(...)` adds the options to a typer command and hands the command one `model: ModelSpec` argument
(None when --model was not given and is optional); the command declares only its own options. The spec carries
the backend name and its typed --backend-option values, checked before any data or model loads.
"""

# No `from __future__ import annotations` here: typer reads these annotations as objects from the signature
# built below, outside this module's namespace.

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from harness.errors import HarnessError


def parse_options(pairs: list[str] | None, flag: str = "--task-option") -> dict[str, str]:
    """KEY=VALUE pairs of a repeatable option; anything else names the flag."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise HarnessError(f"{flag} {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def check_positive(value: int | None, flag: str, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise HarnessError(f"{flag}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def parse_batch_size(value: str | int) -> tuple[int, bool]:
    """--batch-size N or auto: (the batch the runner plans, whether the backend finds its own)."""
    from harness.models.batching import AUTO_START

    if str(value).strip().lower() == "auto":
        return AUTO_START, True
    try:
        n = int(value)
    except ValueError:
        raise HarnessError(f"--batch-size {value}: expected a positive integer or auto") from None
    check_positive(n, "--batch-size")
    return n, False


def _opt(annotation: Any, default: Any, *names: str, help: str) -> inspect.Parameter:
    name = names[0].lstrip("-").replace("-", "_")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(*names, help=help)])


def _params(model_required: bool, with_base: bool, kind: bool, default_kind: str, adapters: bool) -> list[inspect.Parameter]:
    model_help = "Hugging Face id or local directory of the base model (the served model name with --backend openai)."
    out = [
        _opt(str, ..., "--model", "-m", help=model_help) if model_required
        else _opt(str | None, None, "--model", "-m", help=model_help),
    ]
    if adapters:
        out.append(_opt(list[str] | None, None, "--adapter", "-a", help="PEFT adapter directory (repeatable)."))
        out.append(_opt(str | None, None, "--checkpoints", help="all, last or every:N (steps that are multiples of N, "
                        "and the last): an --adapter DIR holding a training run's checkpoint-<step> folders becomes one "
                        "variant per chosen checkpoint, in step order."))
    if with_base:
        out.append(_opt(bool, False, "--with-base", help="Also evaluate the bare base model."))
    out += [
        _opt(str, "hf", "--backend", help="Engine that answers: hf, vllm, ... (see `harness backends`)."),
        _opt(list[str] | None, None, "--backend-option", help="Backend setting KEY=VALUE (repeatable)."),
        _opt(bool, False, "--load-in-4bit", help="NF4 4-bit with double quantisation (bitsandbytes)."),
        _opt(bool, False, "--load-in-8bit", help="LLM.int8 8-bit (bitsandbytes)."),
        _opt(str, "float32", "--bnb-4bit-compute-dtype", help="Compute dtype of 4-bit layers."),
        _opt(str, "float32", "--dtype", help="float32, bfloat16, float16 or auto."),
        _opt(str, "cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
        _opt(str, "8", "--batch-size", "-b", help="Requests per model call, or auto: the largest that fits, found by "
             "halving on out-of-memory (an out-of-memory batch is always halved and retried, never lost)."),
        _opt(str | None, None, "--revision", help="Hub revision of the base model."),
        _opt(bool, False, "--trust-remote-code", help="Allow custom model code from the hub."),
    ]
    if kind:
        out += [_opt(str, default_kind, "--model-kind", help="auto, causal, seq-cls or image."),
                _opt(int | None, None, "--num-labels", help="Classifier head size when no adapter sets it.")]
    return out


def build_spec(values: dict[str, Any], default_kind: str) -> Any:
    """The ModelSpec of the model options' values; the backend and its options are checked here."""
    from harness.backends import get_backend
    from harness.models.loading import ModelSpec

    if values["model"] is None:
        return None
    from harness.reports.checkpoints import expand_adapters

    batch_size, auto_batch = parse_batch_size(values["batch_size"])
    adapters = expand_adapters(list(values.get("adapter") or []), values.get("checkpoints"))
    backend = get_backend(values["backend"])
    options = backend.parse_options(parse_options(values["backend_option"], "--backend-option"))
    return ModelSpec(model=values["model"], adapters=adapters,
                     with_base=values.get("with_base", False), kind=values.get("model_kind", default_kind),
                     load_in_4bit=values["load_in_4bit"], load_in_8bit=values["load_in_8bit"],
                     bnb_4bit_compute_dtype=values["bnb_4bit_compute_dtype"], dtype=values["dtype"],
                     device=values["device"], revision=values["revision"], trust_remote_code=values["trust_remote_code"],
                     batch_size=batch_size, auto_batch=auto_batch, num_labels=values.get("num_labels"),
                     backend=values["backend"], backend_options=options)


def model_options(model_required: bool = True, with_base: bool = True, kind: bool = True, default_kind: str = "auto",
                  adapters: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command taking `model: ModelSpec` (or `ModelSpec | None`): adds the model options to it."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name != "model"]
        added = _params(model_required, with_base, kind, default_kind, adapters)
        defaults = {p.name: p.default for p in added}

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            # Python callers (tests, notebooks) may leave options out; typer always passes them all.
            values = {n: kwargs.pop(n, d) for n, d in defaults.items()}
            if values.get("model") is ...:
                raise TypeError(f"{fn.__name__}() missing required keyword argument 'model'")
            return fn(*args, model=build_spec(values, default_kind), **kwargs)

        required = [p for p in own if p.default is inspect.Parameter.empty]
        optional = [p for p in own if p.default is not inspect.Parameter.empty]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in required] + added[:1] + \
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in optional] + added[1:]
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the signature above, not the undecorated one
        return command

    return wrap


BackendOpt = Annotated[str, typer.Option("--backend", help="Engine of the evaluations (see `harness backends`).")]
BackendOptionOpt = Annotated[list[str] | None, typer.Option("--backend-option", help="Backend setting KEY=VALUE (repeatable).")]


def backend_choice(name: str, pairs: list[str] | None) -> tuple[str, dict[str, Any]]:
    """(backend name, its typed options), checked: for commands that build their ModelSpec themselves (train, sweep)."""
    from harness.backends import get_backend

    return name, get_backend(name).parse_options(parse_options(pairs, "--backend-option"))
