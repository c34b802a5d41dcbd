"""The Hugging Face backend: transformers + PEFT in this process, the reference and QLoRA-faithful path.

The base is loaded once (bitsandbytes 4/8-bit included). A causal LM with several variants (adapters, --with-base)
has every LoRA adapter loaded into one PeftModel under its own name, and its batches mix variants: each row names
its adapter (PEFT's `adapter_names`, "__base__" for the bare base), so one forward serves them all. Where PEFT
cannot mix (DoRA, trained biases, modules_to_save, another tokenizer, encoders and image classifiers), or with
`--backend-option mix_adapters=false`, variants are answered one at a time in order, each adapter applied to the
same base as the previous one is dropped; the reason is said once.

`open(spec, any_order=True)` (Ray replicas, which get batches of any variant at any time) loads every adapter
into one PeftModel too, and where it cannot mix switches with set_adapter, or turns adapter layers off for the
base: the same weights and the same forward as the in-order path, so the same answers.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendOption, Model, VariantInfo, VariantModel
from harness.errors import HarnessError
from harness.requests import Answer, Request


class HFSession:
    mixes_variants = False

    def __init__(self, spec: Any, any_order: bool = False) -> None:
        from harness.models.batching import AutoBatch
        from harness.models.loading import adapter_identity, iter_variants, variant_labels

        self.spec = spec
        self._batch_size = spec.batch_size
        self.auto = AutoBatch()  # every call is halved and retried on out-of-memory; sizes that fit are remembered
        self._any: _AnyOrder | None = None
        self.mixes_variants = False
        n_variants = len(spec.adapters) + (1 if spec.with_base or not spec.adapters else 0)
        self.unmixed = _mix_problem(spec) if n_variants > 1 else "one variant"
        if any_order or self.unmixed is None:
            self._any = _AnyOrder(spec)
            ident = self._any.base_identity
            self.unmixed = self.unmixed or self._any.mix_problem
            self.mixes_variants = self.unmixed is None
            if self.mixes_variants:
                self._any.enable_all()
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
        self.batch_size = spec.batch_size  # mixed: the model's rows in flight are --batch-size per variant
        if n_variants > 1 and self.unmixed is not None and self.unmixed != "turned off":
            print(f"note: hf answers the {n_variants} variants one at a time, not in mixed batches: {self.unmixed}",
                  file=sys.stderr)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, n: int) -> None:  # the mixed batches' model slots follow (continuous batching)
        self._batch_size = n
        if self.mixes_variants and self._any is not None and self._any.mixed is not None:
            self._any.mixed.batch_size = n * len(self.variants)

    @property
    def batch_sizes(self) -> dict[str, int]:
        """Per kind, what the runner hands over per call. Mixed batches hold --batch-size rows of every variant
        (a prompt's rows for all adapters share one forward), and continuous batching refills from several."""
        from harness.models.causal import REFILL

        if not self.mixes_variants:
            return {}
        rows = self._batch_size * len(self.variants)
        on = self.spec.backend_options.get("continuous_batching", True)
        return {"default": rows, "generate": rows * REFILL if on else rows}

    def model_for(self, label: str) -> Model:
        """The variant's model; in any-order mode it is also made the active one (answer its batches before asking
        for another variant)."""
        if self.mixes_variants:
            v = next((v for v in self.variants if v.label == label), None)
            if v is None:
                raise RuntimeError(f"no variant {label!r}")
            return VariantModel(self, label, v.identity)
        from harness.models.batching import SafeModel

        if self._any is not None:
            return SafeModel(self._any.activate(label), self.auto)
        while self._current.label != label:
            try:
                self._current = next(self._it)
            except StopIteration:
                raise RuntimeError(f"variant {label!r} asked for out of order") from None
        return SafeModel(self._current.model, self.auto)

    def answer(self, kind: str, items: list[tuple[str, Request]]) -> list[Answer]:
        """A batch of any variants' requests in one pass over the shared base, each row under its own adapter."""
        if not self.mixes_variants or self._any is None:
            raise HarnessError(f"the hf backend answers one variant at a time here ({self.unmixed})")
        method = getattr(self._any.mixed, kind, None)
        if method is None:
            raise HarnessError(f"model {self.spec.model} cannot answer {kind} requests")
        models = self._any.models

        def run(part: list[tuple[str, Request]]) -> list[Answer]:
            return list(method([r for _, r in part], adapters=[models[label][1] or "__base__" for label, _ in part]))

        return self.auto.run(kind, items, run, key=lambda it: it[1])

    def describe(self) -> dict[str, Any]:
        import transformers

        out: dict[str, Any] = {"name": "hf", "transformers": transformers.__version__,
                               "mixed_batches": self.mixes_variants}
        if not self.mixes_variants and self.unmixed != "one variant":
            out["unmixed_because"] = self.unmixed
        if self.auto.limits:  # the batch sizes out-of-memory errors left, per request kind and length bucket
            out["batch_limits"] = {f"{k}/{b}": n for (k, b), n in sorted(self.auto.limits.items())}
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
        self.mix_problem: str | None = None if kind == "causal" else f"a {kind} model"
        self.mixed: Any = None  # the wrapper that answers mixed batches (base tokenizer, every adapter loaded)
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
                if not _same_tokenizer(tok, processor) and self.mix_problem is None:
                    self.mix_problem = f"--adapter {path} ships a tokenizer unlike the base's"
            self.peft = L._apply_adapter(self.peft if self.peft is not None else hf_model, path, f"adapter{i}", spec.model)
            ident = {**self.base_identity, **L.adapter_identity(path)}
            self.models[labels[offset + i]] = (wrapper(self.peft, tok, ident, spec), f"adapter{i}")
        if self.peft is not None:
            if spec.load_in_4bit:
                L.disable_avx512bf16_repack(self.peft)
            self.peft.eval()
            self.mixed = wrapper(self.peft, processor, dict(self.base_identity), spec)

    def enable_all(self) -> None:
        """Adapter layers on, for good: each mixed batch names its rows' adapters itself, and each LoRA layer runs
        one stacked product for all of them (harness/models/mixed_lora.py)."""
        from harness.models.mixed_lora import install

        if self.peft is not None:
            self.peft.base_model.enable_adapter_layers()
            install(self.peft)

    def activate(self, label: str) -> Any:
        model, name = self.models[label]
        if self.peft is not None:
            if name is None:
                self.peft.base_model.disable_adapter_layers()
            else:
                self.peft.base_model.enable_adapter_layers()
                self.peft.set_adapter(name)
        return model


def _mix_problem(spec: Any) -> str | None:
    """Why this run's adapters cannot share mixed batches (from their configs alone), or None."""
    from harness.models.loading import read_adapter_config

    if not spec.backend_options.get("mix_adapters", True):
        return "turned off"
    if spec.kind not in ("auto", "causal"):
        return f"a {spec.kind} model"
    for path in spec.adapters:
        cfg = read_adapter_config(path)
        if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
            return f"--adapter {path} is {cfg.get('peft_type')}, and PEFT mixes only LoRA adapters"
        if cfg.get("use_dora"):
            return f"--adapter {path} uses DoRA, which PEFT cannot mix in one batch"
        if cfg.get("bias", "none") not in (None, "none"):
            return f"--adapter {path} trained biases (bias={cfg.get('bias')}), which rewrite the shared base"
        if cfg.get("modules_to_save"):
            return f"--adapter {path} saves whole modules (modules_to_save), which mixed batches cannot keep apart"
        if cfg.get("alora_invocation_tokens"):
            return f"--adapter {path} is an activated LoRA"
    return None


def _same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers turn every prompt into the same tokens (vocabulary, specials, chat template)."""
    probe = "Question: Ünïcode 3+4=?\n  Answer:  7</s>"
    return (len(a) == len(b) and a.get_vocab() == b.get_vocab()
            and getattr(a, "chat_template", None) == getattr(b, "chat_template", None)
            and (a.bos_token, a.eos_token) == (b.bos_token, b.eos_token)
            and a(probe)["input_ids"] == b(probe)["input_ids"])


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
    options = {
        "mix_adapters": BackendOption(bool, "Answer a causal LM's variants in mixed batches (PEFT adapter_names) over "
                                      "one loaded base; false: one variant at a time.", True),
        "continuous_batching": BackendOption(bool, "Generate with --batch-size rows in flight, a finished row's slot "
                                             "refilled at once (the runner hands over 4 batches at a time); false: "
                                             "static batches that run until their longest row ends.", True),
    }

    def open(self, spec: Any, any_order: bool = False) -> HFSession:
        return HFSession(spec, any_order)
