"""The Hugging Face backend: transformers + PEFT in this process, the reference and QLoRA-faithful path.

The base is loaded once (bitsandbytes 4/8-bit included); variants are answered one at a time in order, each
adapter applied to the same base as the previous one is dropped. Encoders and image classifiers answer here too.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from harness.backends.base import Backend, Model, VariantInfo
from harness.errors import HarnessError
from harness.requests import Answer, Request


class HFSession:
    mixes_variants = False

    def __init__(self, spec: Any) -> None:
        from harness.models.loading import adapter_identity, iter_variants, variant_labels

        self.spec = spec
        self.batch_size = spec.batch_size
        self._it: Generator[Any, None, None] = iter_variants(spec)
        self._current = next(self._it)  # loads the base: load errors surface here, before anything runs
        self.kind = str(self._current.identity.get("kind", "causal"))
        base = {k: v for k, v in self._current.identity.items() if k not in ("adapter", "adapter_path", "adapter_hash")}
        base["backend"] = "hf"
        has_base = spec.with_base or not spec.adapters
        paths: list[str | None] = ([None] if has_base else []) + list(spec.adapters)
        self.variants = [VariantInfo(label, dict(base) if p is None else {**base, **adapter_identity(p)}, p)
                         for label, p in zip(variant_labels(spec), paths)]

    def model_for(self, label: str) -> Model:
        while self._current.label != label:
            try:
                self._current = next(self._it)
            except StopIteration:
                raise RuntimeError(f"variant {label!r} asked for out of order") from None
        model: Model = self._current.model
        return model

    def answer(self, kind: str, items: list[tuple[str, Request]]) -> list[Answer]:
        raise HarnessError("the hf backend answers one variant at a time")

    def describe(self) -> dict[str, Any]:
        import transformers

        out: dict[str, Any] = {"name": "hf", "transformers": transformers.__version__}
        try:
            import peft

            out["peft"] = peft.__version__
        except ImportError:
            pass
        return out

    def close(self) -> None:
        self._it.close()


class HFBackend(Backend):
    name = "hf"
    answers = ("generate", "loglikelihood", "classify")
    requires = ("transformers", "peft")
    summary = "transformers + PEFT in process: causal LMs, encoders, image classifiers; bitsandbytes 4/8-bit"

    def open(self, spec: Any) -> HFSession:
        return HFSession(spec)
