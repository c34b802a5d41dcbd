"""Load a base model once, then apply each adapter in turn; identities for the answer store.

Identity = base (hub id + revision, or a hash of a local directory's config and weight files)
+ adapter (hash of its config and weights) + quantisation + dtype. Two runs share stored answers
only when all of these agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class ModelSpec:
    model: str
    adapters: list[str] = field(default_factory=list)
    with_base: bool = False
    kind: str = "auto"  # auto | causal | seq-cls | image
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_compute_dtype: str = "float32"
    dtype: str = "float32"
    device: str = "cpu"
    revision: str | None = None
    trust_remote_code: bool = False
    batch_size: int = 8
    auto_batch: bool = False  # --batch-size auto: batch_size is where the search starts
    num_labels: int | None = None  # seq-cls / image heads when no adapter says otherwise
    backend: str = "hf"  # the engine that answers (harness.backends entry point)
    backend_options: dict[str, Any] = field(default_factory=dict)  # typed --backend-option values


def file_hash(path: Path, h: Any | None = None) -> str:
    h = h or hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_hash(path: Path, full: bool) -> str:
    """Hash of a model directory: configs in full; weights in full (adapters) or by name, size and edges (bases)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or "checkpoint-" in str(p.relative_to(path)):
            continue
        rel = str(p.relative_to(path))
        if p.suffix in (".json", ".txt", ".model", ".py") or full:
            h.update(rel.encode())
            file_hash(p, h)
        elif p.suffix in WEIGHT_SUFFIXES:
            size = p.stat().st_size
            h.update(f"{rel}:{size}".encode())
            with p.open("rb") as f:
                h.update(f.read(1 << 20))
                f.seek(max(0, size - (1 << 20)))
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def base_identity(spec: ModelSpec, hf_config: Any) -> dict[str, Any]:
    local = Path(spec.model).is_dir()
    ident: dict[str, Any] = {"base": str(Path(spec.model).resolve()) if local else spec.model}
    if local:
        ident["base_hash"] = dir_hash(Path(spec.model), full=False)
    else:
        ident["revision"] = getattr(hf_config, "_commit_hash", None) or spec.revision or "main"
    ident["quantization"] = "nf4-dq" if spec.load_in_4bit else ("int8" if spec.load_in_8bit else None)
    if spec.load_in_4bit:
        ident["compute_dtype"] = spec.bnb_4bit_compute_dtype
    ident["dtype"] = spec.dtype
    return ident


def model_key(identity: dict[str, Any]) -> str:
    """The store key of a model identity (the device is left out: answers do not depend on it)."""
    ident = {k: v for k, v in identity.items() if k not in ("device", "adapter_path")}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def torch_dtype(name: str) -> Any:
    import torch

    if name == "auto":
        return "auto"
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[name]
    except KeyError:
        raise HarnessError(f"--dtype: unknown dtype {name!r} (use float32, float16, bfloat16 or auto)") from None


def quantization_config(spec: ModelSpec) -> Any | None:
    if spec.load_in_4bit and spec.load_in_8bit:
        raise HarnessError("--load-in-4bit and --load-in-8bit exclude each other")
    if not (spec.load_in_4bit or spec.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    if spec.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(spec.bnb_4bit_compute_dtype),
    )


def disable_avx512bf16_repack(model: Any) -> int:
    """Stop bitsandbytes repacking 4-bit weights on an eval forward (corrupts later QLoRA gradients on avx512_bf16 CPUs)."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def detect_kind(spec: ModelSpec, hf_config: Any) -> str:
    if spec.kind != "auto":
        return spec.kind
    archs = getattr(hf_config, "architectures", None) or []
    for a in archs:
        if a.endswith("ForCausalLM") or a.endswith("LMHeadModel"):
            return "causal"
        if a.endswith("ForSequenceClassification"):
            return "seq-cls"
        if a.endswith("ForImageClassification"):
            return "image"
    if getattr(hf_config, "is_encoder_decoder", False) is False and archs == []:
        return "causal"
    model_type = getattr(hf_config, "model_type", "")
    if model_type in ("bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra", "albert", "mpnet"):
        return "seq-cls"
    if model_type in ("resnet", "vit", "convnext", "swin", "deit", "beit", "regnet", "efficientnet", "mobilenet_v2"):
        return "image"
    return "causal"


def load_config(spec: ModelSpec) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec.model, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except OSError as e:
        hint = "a local directory with config.json, or a hub id reachable from this machine"
        raise HarnessError(f"--model {spec.model}: cannot load its config ({str(e).splitlines()[0][:160]}); give {hint}") \
            from None
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise HarnessError(f"--model {spec.model}: needs custom code; pass --trust-remote-code if you trust it") \
                from None
        raise HarnessError(f"--model {spec.model}: {str(e).splitlines()[0]}") from None


def read_adapter_config(path: str) -> dict[str, Any]:
    p = Path(path)
    cfg = p / "adapter_config.json"
    if not p.is_dir():
        raise HarnessError(f"--adapter {path}: not a directory")
    if not cfg.exists():
        raise HarnessError(f"--adapter {path}: no adapter_config.json (is this a PEFT adapter directory?)")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise HarnessError(f"{cfg}: not valid JSON ({e.msg})") from None


def adapter_identity(path: str) -> dict[str, Any]:
    return {"adapter": Path(path).name, "adapter_path": str(Path(path).resolve()),
            "adapter_hash": dir_hash(Path(path), full=True)}


@dataclass
class Variant:
    """One thing to evaluate: the base, or the base with one adapter active."""

    label: str
    model: Any  # a model-kind wrapper (CausalLM, ...)
    identity: dict[str, Any]
    adapter_path: str | None = None


def _auto_class(kind: str) -> Any:
    import transformers

    name = {"causal": "AutoModelForCausalLM", "seq-cls": "AutoModelForSequenceClassification",
            "image": "AutoModelForImageClassification"}[kind]
    return getattr(transformers, name)


def _wrapper(kind: str) -> Any:
    if kind == "causal":
        from harness.models.causal import CausalLM

        return CausalLM
    if kind == "seq-cls":
        from harness.models.encoder import EncoderClassifier

        return EncoderClassifier
    if kind == "image":
        from harness.models.image import ImageClassifier

        return ImageClassifier
    raise HarnessError(f"--model-kind: unknown kind {kind!r} (use auto, causal, seq-cls or image)")


def _load_processor(kind: str, path: str, spec: ModelSpec) -> Any:
    if kind == "image":
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, revision=spec.revision if path == spec.model else None,
                                         trust_remote_code=spec.trust_remote_code)


def _head_size_from_adapter(path: str) -> int | None:
    """num_labels of a classification head saved with an adapter (modules_to_save), if any."""
    from safetensors import safe_open

    f = Path(path) / "adapter_model.safetensors"
    if not f.exists():
        return None
    with safe_open(str(f), "pt") as st:
        for k in st.keys():
            # ResNet-style heads are Sequential(Flatten, Linear): classifier.1.weight
            if "lora" not in k and (k.endswith(("classifier.weight", "classifier.out_proj.weight", "score.weight"))
                                    or re.search(r"classifier\.\d+\.weight$", k)):
                return int(st.get_slice(k).get_shape()[0])
    return None


def load_base(spec: ModelSpec) -> tuple[Any, Any, str, dict[str, Any]]:
    """(hf_model, processor, kind, identity) of the base, loaded once."""
    hf_config = load_config(spec)
    kind = detect_kind(spec, hf_config)
    kwargs: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    q = quantization_config(spec)
    if q is not None:
        kwargs["quantization_config"] = q
        kwargs["device_map"] = {"": spec.device}
    kwargs["dtype"] = torch_dtype(spec.dtype)
    if kind in ("seq-cls", "image"):
        n = spec.num_labels
        for a in spec.adapters:
            n = _head_size_from_adapter(a) or n
        if n is not None:
            kwargs["num_labels"] = n
            kwargs["ignore_mismatched_sizes"] = True
    if kind in ("seq-cls", "image"):
        import torch

        torch.manual_seed(0)  # a head the checkpoint lacks starts the same on every load, so base runs repeat
    try:
        model = _auto_class(kind).from_pretrained(spec.model, **kwargs)
    except OSError as e:
        raise HarnessError(f"--model {spec.model}: cannot load weights ({str(e).splitlines()[0][:200]})") from None
    if q is None and spec.device != "cpu":
        model.to(spec.device)
    if spec.load_in_4bit:
        disable_avx512bf16_repack(model)
    model.eval()
    processor = _load_processor(kind, spec.model, spec)
    identity = base_identity(spec, hf_config)
    identity["kind"] = kind
    return model, processor, kind, identity


def _apply_adapter(model: Any, path: str, name: str, base_name: str) -> Any:
    from peft import PeftModel

    try:
        if isinstance(model, PeftModel):
            model.load_adapter(path, adapter_name=name)
            model.set_adapter(name)
            return model
        return PeftModel.from_pretrained(model, path, adapter_name=name)
    except (RuntimeError, ValueError, KeyError) as e:
        msg = str(e)
        if "size mismatch" in msg:
            first = next((ln.strip() for ln in msg.splitlines() if "size mismatch" in ln), "")[:200]
            raise HarnessError(
                f"--adapter {path} does not fit base {base_name}: it was trained on a model of another shape ({first})"
            ) from None
        if "not found in the base model" in msg or "Target modules" in msg:
            raise HarnessError(f"--adapter {path} does not fit base {base_name}: {msg.splitlines()[0][:200]}") from None
        raise


def variant_labels(spec: ModelSpec) -> list[str]:
    """Labels of the variants iter_variants yields, in order: `base`, then each adapter's directory name
    (`name-2`, `name-3` ... when two adapters share a name, so their run directories never collide); a training
    checkpoint `RUN/checkpoint-<step>` is `RUN@step<step>`, so the label names the run and carries the step."""
    from harness.reports.checkpoints import checkpoint_label

    labels = ["base"] if spec.with_base or not spec.adapters else []
    for path in spec.adapters:
        name = checkpoint_label(Path(path.rstrip("/"))) or Path(path.rstrip("/")).name or path
        label, i = name, 2
        while label in labels:
            label, i = f"{name}-{i}", i + 1
        labels.append(label)
    return labels


def check_device(device: str) -> None:
    """--device names a device this machine has (checked before any weights load)."""
    import torch

    kind = device.split(":", 1)[0]
    if kind == "cpu":
        return
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}); "
                               "use --device cpu")
        index = device.split(":", 1)[1] if ":" in device else "0"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise HarnessError(f"--device {device}: no such GPU (this machine has {torch.cuda.device_count()})")
        return
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise HarnessError(f"--device {device}: MPS is not available on this machine; use --device cpu")
        return
    raise HarnessError(f"--device {device}: unknown device (use cpu, cuda, cuda:N or mps)")


def check_weights(path: str, flag: str) -> None:
    """Every *.safetensors file of a local model or adapter directory opens: a truncated download is a one-line
    error naming the file, not a traceback from deep inside the loader."""
    p = Path(path)
    if not p.is_dir():
        return
    from safetensors import SafetensorError, safe_open

    for f in sorted(p.glob("*.safetensors")):
        try:
            with safe_open(str(f), "pt") as st:
                for k in list(st.keys())[-1:]:
                    st.get_slice(k)
        except (SafetensorError, OSError) as e:
            raise HarnessError(f"{flag} {path}: {f.name} is truncated or corrupt ({str(e).splitlines()[0][:120]}); "
                               "download or save it again") from None
        size = f.stat().st_size
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n) or b"{}")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise HarnessError(f"{flag} {path}: {f.name} is truncated ({size} bytes, its header needs {8 + n + end}); "
                               "download or save it again")


def iter_variants(spec: ModelSpec) -> Generator[Variant, None, None]:
    """Yield the base (with --with-base or when no adapter is given), then each adapter on the same base."""
    for a in spec.adapters:
        read_adapter_config(a)  # fail fast, before the base is loaded
        check_weights(a, "--adapter")
    check_device(spec.device)
    check_weights(spec.model, "--model")
    labels = variant_labels(spec)
    hf_model, processor, kind, base_ident = load_base(spec)
    wrapper = _wrapper(kind)
    base_name = spec.model
    if spec.with_base or not spec.adapters:
        yield Variant("base", wrapper(hf_model, processor, base_ident, spec), dict(base_ident))
    model = hf_model
    previous: str | None = None
    for i, path in enumerate(spec.adapters):
        tok = processor
        if kind != "image" and any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            tok = _load_processor(kind, path, spec)
            emb = model.get_input_embeddings()
            if len(tok) > emb.weight.shape[0]:
                model.resize_token_embeddings(len(tok))
        name = f"adapter{i}"
        model = _apply_adapter(model, path, name, base_name)
        if previous is not None:
            model.delete_adapter(previous)
        previous = name
        if spec.load_in_4bit:
            disable_avx512bf16_repack(model)
        model.eval()
        ident = {**base_ident, **adapter_identity(path)}
        yield Variant(labels[i + (len(labels) - len(spec.adapters))], wrapper(model, tok, ident, spec), ident,
                      adapter_path=path)


def short_name(model: str) -> str:
    return Path(model.rstrip("/")).name if os.sep in model or Path(model).exists() else model.replace("/", "__")
