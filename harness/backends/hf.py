"""The Hugging Face backend: transformers + PEFT in this process, the reference and QLoRA-faithful path.

The base is loaded once (bitsandbytes 4/8-bit included); variants are answered one at a time in order, each
adapter applied to the same base as the previous one is dropped. Encoders and image classifiers answer here too.

`open(spec, any_order=True)` (Ray replicas, which get batches of any variant at any time) loads every adapter
into one PeftModel under its own name instead, and switches with set_adapter, or turns adapter layers off for the
base: the same weights and the same forward as the in-order path, so the same answers.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, Model, VariantInfo
from harness.errors import HarnessError
from harness.requests import Answer, Request


class HFSession:
    mixes_variants = False

    def __init__(self, spec: Any, any_order: bool = False) -> None:
        from harness.models.loading import adapter_identity, iter_variants, variant_labels

        self.spec = spec
        self.batch_size = spec.batch_size
        self._any: _AnyOrder | None = None
        if any_order:
            self._any = _AnyOrder(spec)
            ident = self._any.base_identity
        else:
            self._it: Generator[Any, None, None] = iter_variants(spec)
            self._current = next(self._it)  # loads the base: load errors surface here, before anything runs
            ident = self._current.identity
        self.kind = str(ident.get("kind", "causal"))
        base = {k: v for k, v in ident.items() if k not in ("adapter", "adapter_path", "adapter_hash")}
        base["backend"] = "hf"
        has_base = spec.with_base or not spec.adapters
        paths: list[str | None] = ([None] if has_base else []) + list(spec.adapters)
        self.variants = [VariantInfo(label, dict(base) if p is None else {**base, **adapter_identity(p)}, p)
                         for label, p in zip(variant_labels(spec), paths)]

    def model_for(self, label: str) -> Model:
        """The variant's model; in any-order mode it is also made the active one (answer its batches before asking
        for another variant)."""
        if self._any is not None:
            return self._any.activate(label)
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
        if self._any is None:
            self._it.close()


class _AnyOrder:
    """The base and every adapter loaded at once (adapter i under the name adapter{i}, as iter_variants names it)."""

    def __init__(self, spec: Any) -> None:
        from harness.models import loading as L

        for a in spec.adapters:
            _check_any_order(a, spec)
            L.check_weights(a, "--adapter")
        L.check_device(spec.device)
        L.check_weights(spec.model, "--model")
        labels = L.variant_labels(spec)
        hf_model, processor, kind, self.base_identity = L.load_base(spec)
        wrapper = L._wrapper(kind)
        self.peft: Any = None
        self.models: dict[str, tuple[Any, str | None]] = {}
        if spec.with_base or not spec.adapters:
            self.models["base"] = (wrapper(hf_model, processor, dict(self.base_identity), spec), None)
        offset = len(labels) - len(spec.adapters)
        for i, path in enumerate(spec.adapters):
            tok = processor
            if kind != "image" and any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
                tok = L._load_processor(kind, path, spec)
                if len(tok) > hf_model.get_input_embeddings().weight.shape[0]:
                    raise HarnessError(f"--adapter {path}: its tokenizer adds tokens to the base's vocabulary, which would "
                                       "change every other variant here; evaluate it in a run of its own")
            self.peft = L._apply_adapter(self.peft if self.peft is not None else hf_model, path, f"adapter{i}", spec.model)
            ident = {**self.base_identity, **L.adapter_identity(path)}
            self.models[labels[offset + i]] = (wrapper(self.peft, tok, ident, spec), f"adapter{i}")
        if self.peft is not None:
            if spec.load_in_4bit:
                L.disable_avx512bf16_repack(self.peft)
            self.peft.eval()

    def activate(self, label: str) -> Any:
        model, name = self.models[label]
        if self.peft is not None:
            if name is None:
                self.peft.base_model.disable_adapter_layers()
            else:
                self.peft.base_model.enable_adapter_layers()
                self.peft.set_adapter(name)
        return model


def _check_any_order(path: str, spec: Any) -> None:
    """An adapter that also trains biases writes them into the base's layers, so with other variants loaded beside
    it their answers would change: refused, naming it."""
    from harness.models.loading import read_adapter_config

    bias = read_adapter_config(path).get("bias", "none")
    if bias not in (None, "none") and (len(spec.adapters) > 1 or spec.with_base):
        raise HarnessError(f"--adapter {path}: trained with bias={bias}, which rewrites the base's biases; variants "
                           "answered in any order (--ray) cannot keep them apart, so evaluate it in a run of its own")


class HFBackend(Backend):
    name = "hf"
    answers = ("generate", "loglikelihood", "classify")
    requires = ("transformers", "peft")
    summary = "transformers + PEFT in process: causal LMs, encoders, image classifiers; bitsandbytes 4/8-bit"

    def open(self, spec: Any, any_order: bool = False) -> HFSession:
        return HFSession(spec, any_order)
