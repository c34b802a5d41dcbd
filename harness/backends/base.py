"""What a backend is: it opens a session on a base model and its adapters and answers typed requests.

A backend knows nothing about tasks. The runner hands it batches of one request kind; a backend whose engine can
mix variants in one batch (vLLM's multi-LoRA) says so with `mixes_variants` and gets batches of
(variant label, request) pairs across every variant of the run; the others get one variant at a time, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from harness.errors import HarnessError
from harness.requests import Answer, Classify, Generate, LogLikelihood, Request


@dataclass(frozen=True)
class BackendOption:
    """One --backend-option KEY=VALUE a backend accepts: how to parse it and what it does."""

    type: type
    help: str
    default: Any = None


@dataclass
class VariantInfo:
    """One thing to evaluate: the base, or the base with one adapter. `identity` keys the answer store."""

    label: str
    identity: dict[str, Any]
    adapter_path: str | None = None


class Model(Protocol):
    """One variant's answering side (the HF wrappers in harness/models implement it)."""

    identity: dict[str, Any]
    batch_size: int

    def generate(self, requests: list[Generate]) -> list[list[str]]: ...
    def loglikelihood(self, requests: list[LogLikelihood]) -> list[tuple[float, bool]]: ...
    def classify(self, requests: list[Classify]) -> list[list[float]]: ...


class Session(Protocol):
    """An opened backend: the model kind, every variant of the run, and how to answer them."""

    kind: str
    batch_size: int
    mixes_variants: bool

    @property
    def variants(self) -> list[VariantInfo]:
        """Every variant of the run, in order (a served endpoint learns them on first use)."""
        ...

    def model_for(self, label: str) -> Model:
        """The variant's model (backends that answer one variant at a time; asked in variant order)."""
        ...

    def answer(self, kind: str, items: list[tuple[str, Request]]) -> list[Answer]:
        """Answers for (variant label, request) pairs that may mix variants (backends with mixes_variants)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What results.json records about the engine (name, options, versions)."""
        ...

    def close(self) -> None: ...


class Backend:
    """A registered engine. Subclasses set the class attributes and implement `open`."""

    name: ClassVar[str]
    answers: ClassVar[tuple[str, ...]]  # request kinds it can answer
    extra: ClassVar[str | None] = None  # pip extra that installs what it needs (harness[EXTRA])
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules it needs
    options: ClassVar[dict[str, BackendOption]] = {}
    summary: ClassVar[str] = ""
    local_adapters: ClassVar[bool] = True  # --adapter is a local PEFT directory (False: a name the engine serves)

    @classmethod
    def missing(cls) -> list[str]:
        """Modules this backend needs that are not installed."""
        import importlib.util

        out = []
        for mod in cls.requires:
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(mod)
        return out

    @classmethod
    def check_installed(cls) -> None:
        missing = cls.missing()
        if missing:
            how = f"pip install 'harness[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"
            raise HarnessError(f"--backend {cls.name}: needs {', '.join(missing)}, which is not installed ({how})")

    @classmethod
    def parse_options(cls, raw: dict[str, str]) -> dict[str, Any]:
        """--backend-option values typed by the backend's declaration; an unknown key or bad value is an error."""
        out: dict[str, Any] = {k: o.default for k, o in cls.options.items() if o.default is not None}
        for key, value in raw.items():
            opt = cls.options.get(key)
            if opt is None:
                known = ", ".join(sorted(cls.options)) or "none"
                raise HarnessError(f"--backend-option {key}: backend {cls.name} has no such option (its options: {known})")
            try:
                if opt.type is bool:
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    out[key] = value.lower() in ("1", "true", "yes", "on")
                else:
                    out[key] = opt.type(value)
            except ValueError:
                raise HarnessError(f"--backend-option {key}={value}: expected {opt.type.__name__}") from None
        return out

    def open(self, spec: Any) -> Session:
        raise NotImplementedError


class VariantModel:
    """One variant's view of a session that answers mixed batches: lets per-variant callers (generate, the
    trainer's evaluation) use any backend."""

    def __init__(self, session: Session, label: str, identity: dict[str, Any]) -> None:
        self.session = session
        self.label = label
        self.identity = identity
        self.batch_size = session.batch_size
        self.batch_sizes = dict(getattr(session, "batch_sizes", None) or {})

    def _ask(self, kind: str, requests: list[Any]) -> list[Any]:
        return self.session.answer(kind, [(self.label, r) for r in requests])

    def generate(self, requests: list[Generate]) -> list[list[str]]:
        return self._ask("generate", requests)

    def loglikelihood(self, requests: list[LogLikelihood]) -> list[tuple[float, bool]]:
        return self._ask("loglikelihood", requests)

    def classify(self, requests: list[Classify]) -> list[list[float]]:
        return self._ask("classify", requests)
