"""The vLLM backend: one engine holds the base once and serves it bare and with every LoRA adapter in mixed batches.

Each request names its variant through a LoRARequest (none for the bare base), so one engine call answers a batch
that mixes adapters. Prompts are tokenised here, with the HF backend's own code (harness.models.causal), and sent as
token ids: over-long prompts are cut the same way, log-likelihoods score the same tokens, so answers match the hf
backend's up to float rounding. The engine runs in processes vLLM spawns; close() shuts them down, on success, on
an error and on Ctrl-C alike. vLLM is imported only when a session opens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendOption, VariantInfo, VariantModel
from harness.errors import HarnessError
from harness.models.causal import CausalLM, cut_at_stop
from harness.requests import Answer, Generate, LogLikelihood, Request

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
CPU_KV_GIB = 2
NO_REPEAT_NGRAM = "harness.backends.vllm:NoRepeatNGram"


class _Tokens(CausalLM):
    """The HF backend's prompt rendering and tokenisation (lm-eval's context/continuation split, its empty-context
    and truncation rules) without a model: vLLM gets exactly the token ids the hf backend would run."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:  # no model: CausalLM.__init__ is not called
        self.tokenizer = tokenizer
        self.max_length = max_length
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def prompt_ids(self, req: Generate) -> list[int]:
        """The prompt's tokens as the hf backend feeds them: no special tokens added, the end kept when too long."""
        ids = list(self.tokenizer(self.render(req.prompt), add_special_tokens=False)["input_ids"])
        budget = self.max_length - req.max_new_tokens
        if len(ids) > budget > 0:
            return ids[-budget:]
        if len(ids) >= self.max_length:  # no room for even one new token: keep what the engine can take
            return ids[-(self.max_length - 1):]
        return ids


def _safetensors_shapes(files: list[Path]) -> dict[str, list[int]]:
    """{tensor name: shape} from safetensors headers, without reading any weights."""
    out: dict[str, list[int]] = {}
    for f in files:
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n) or b"{}")
        out.update({k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return out


def _base_shapes(model: str) -> dict[str, list[int]] | None:
    """Weight shapes of a local safetensors base (None for a hub id or .bin weights: vLLM checks those itself)."""
    p = Path(model)
    index = p / "model.safetensors.index.json"
    if index.exists():
        files = sorted({p / f for f in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = sorted(p.glob("*.safetensors")) if p.is_dir() else []
    return _safetensors_shapes(files) if files else None


def _check_adapter_fits(path: str, cfg: dict[str, Any], base: dict[str, list[int]], base_name: str) -> None:
    """Every LoRA matrix of the adapter has a base weight of the matching shape (the hf backend's two checks)."""
    f = Path(path) / "adapter_model.safetensors"
    if not f.exists():
        return
    transposed = bool(cfg.get("fan_in_fan_out"))
    for key, shape in _safetensors_shapes([f]).items():
        if ".lora_A." not in key and ".lora_B." not in key:
            continue
        module = key.removeprefix("base_model.model.").split(".lora_")[0]
        names = [f"{module}.weight", f"{module.removeprefix('model.')}.weight", f"model.{module}.weight"]
        weight = next((base[n] for n in names if n in base), None)
        if weight is None:
            raise HarnessError(f"--adapter {path} does not fit base {base_name}: target module {module} not found in "
                               "the base model")
        out_f, in_f = (weight[1], weight[0]) if transposed else (weight[0], weight[1])
        want, got = (in_f, shape[1]) if ".lora_A." in key else (out_f, shape[0])
        if len(weight) == 2 and want != got:
            raise HarnessError(f"--adapter {path} does not fit base {base_name}: it was trained on a model of another "
                               f"shape ({module}: the adapter expects {got} features, the base has {want})")


def _adapter_targets(path: str, cfg: dict[str, Any]) -> set[str] | None:
    """Suffixes of the modules the adapter changes (from its weights, else its config); None when unknown."""
    f = Path(path) / "adapter_model.safetensors"
    if f.exists():
        keys = _safetensors_shapes([f])
        return {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in keys if ".lora_" in k}
    targets = cfg.get("target_modules")
    return set(targets) if isinstance(targets, list) else None


def _adapter_rank(path: str, cfg: dict[str, Any]) -> int:
    """The adapter's largest rank, after vLLM's own feature checks (DoRA, LoRA bias ... are one-line errors)."""
    from vllm.lora.peft_helper import PEFTHelper

    try:
        helper = PEFTHelper.from_dict(cfg)
    except (ValueError, TypeError) as e:
        raise HarnessError(f"--adapter {path}: adapter_config.json is not a LoRA config vLLM can read ({e})") from None
    problems = helper._validate_features() + (["Adapter bias is not supported."] if helper.bias != "none" else [])
    if problems:
        raise HarnessError(f"--adapter {path}: the vllm backend cannot serve it ({' '.join(problems)}); use --backend hf")
    rank = max([helper.r, *helper.rank_pattern.values()])
    if rank > LORA_RANKS[-1]:
        raise HarnessError(f"--adapter {path}: LoRA rank {rank} is above vLLM's limit of {LORA_RANKS[-1]}; "
                           "use --backend hf")
    return rank


def _check_tokenizer(path: str, base_tok: Any, spec: Any) -> Any | None:
    """The adapter's own tokenizer when it ships one on the base's vocabulary (its chat template may differ); one
    with other tokens needs resized embeddings, which the engine cannot do."""
    if not any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    if tok.get_vocab() != base_tok.get_vocab():
        raise HarnessError(f"--adapter {path}: ships a tokenizer with another vocabulary ({len(tok)} tokens, the base "
                           f"has {len(base_tok)}); the vllm backend serves adapters on the base's tokens, use --backend hf")
    return tok


def _platform() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type or "cpu")


def _check_spec(spec: Any, platform: str, kind: str) -> None:
    """Flags this engine cannot honour: one line each, before anything starts."""
    if kind != "causal":
        raise HarnessError(f"--backend vllm: serves causal language models; {spec.model} is a {kind} model "
                           "(use --backend hf)")
    if spec.load_in_8bit:
        raise HarnessError("--load-in-8bit: the vllm backend quantises in flight to 4-bit only (use --load-in-4bit, "
                           "or --backend hf)")
    if spec.load_in_4bit and platform == "cpu":
        raise HarnessError("--load-in-4bit: the vLLM CPU build has no bitsandbytes 4-bit kernels; use --backend hf")
    device = spec.device.split(":", 1)[0]
    if platform == "cpu" and device != "cpu":
        raise HarnessError(f"--device {spec.device}: this vLLM build runs on the CPU only (use --device cpu)")
    if platform != "cpu" and device == "cpu":
        raise HarnessError(f"--device cpu: this vLLM build runs on {platform} (use --device {platform})")


def _hf_sampling_defaults(model: str, revision: str | None) -> dict[str, Any]:
    """What transformers' generate() adds to the hf backend's settings from the model's generation_config (top_k,
    repetition_penalty), so both engines decode from the same distribution."""
    from transformers import GenerationConfig

    try:
        g = GenerationConfig.from_pretrained(model, revision=revision or "main")
    except OSError:
        g = GenerationConfig()
    return {"top_k": g.top_k if g.top_k is not None else 50,
            "repetition_penalty": g.repetition_penalty if g.repetition_penalty is not None else 1.0}


REAPER = """
import os, select, sys
import psutil
parent, since, seen = psutil.Process(int(sys.argv[1])), float(sys.argv[2]), {}
while True:  # note every process the session starts, until it says bye or its process is gone (EOF, even on kill -9)
    try:
        for q in parent.children(recursive=True):
            if q.pid != os.getpid() and q.create_time() >= since:
                seen.setdefault(q.pid, q)
    except psutil.Error:
        pass
    if select.select([0], [], [], 0.5)[0]:
        data = os.read(0, 64)
        if data.startswith(b"bye"):
            sys.exit(0)
        if not data:
            break
live = [q for q in seen.values() if q.is_running()]
for q in live:
    try:
        q.terminate()
    except psutil.Error:
        pass
for q in psutil.wait_procs(live, timeout=10)[1]:
    try:
        q.kill()
    except psutil.Error:
        pass
"""


def _start_reaper() -> Any:
    """A watcher outside this process: if it dies without closing the session (kill -9), the watcher ends the
    engine processes it started, which would otherwise run on as orphans."""
    import subprocess
    import sys
    import time

    return subprocess.Popen([sys.executable, "-c", REAPER, str(os.getpid()), str(time.time() - 1)],
                            stdin=subprocess.PIPE, text=True, start_new_session=True)


def _stop_reaper(reaper: Any) -> None:
    try:
        reaper.stdin.write("bye\n")
        reaper.stdin.close()
    except OSError:  # it is gone already
        pass
    reaper.wait(timeout=30)


class VLLMSession:
    """One vLLM engine on the base; the base and every adapter answered in shared batches."""

    mixes_variants = True
    kind = "causal"

    def __init__(self, spec: Any) -> None:
        from transformers import AutoTokenizer

        from harness.models.loading import (
            adapter_identity,
            base_identity,
            check_weights,
            detect_kind,
            load_config,
            read_adapter_config,
            variant_labels,
        )

        self.spec = spec
        self.batch_size = spec.batch_size
        self.llm: Any = None
        self._reaper: Any = None
        configs = [read_adapter_config(a) for a in spec.adapters]
        for a in spec.adapters:
            check_weights(a, "--adapter")
        check_weights(spec.model, "--model")
        hf_config = load_config(spec)
        self.platform = _platform()
        _check_spec(spec, self.platform, detect_kind(spec, hf_config))
        self.options = self._resolve_options(spec, hf_config)
        tok = AutoTokenizer.from_pretrained(spec.model, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
        shapes = _base_shapes(spec.model) if spec.adapters else None
        checked = [self._check_adapter(a, c, tok, shapes) for a, c in zip(spec.adapters, configs)]
        self.ranks = [rank for rank, _ in checked]
        targets = [_adapter_targets(a, c) for a, c in zip(spec.adapters, configs)]
        # LoRA only where an adapter has weights; lm_head untouched keeps vLLM's prompt log-probs right with LoRA on
        self.lora_targets = None if any(t is None for t in targets) else sorted({m for t in targets if t is not None for m in t})
        self.lm_head_adapters = [a for a, t in zip(spec.adapters, targets) if t is None or "lm_head" in t]
        self.lora_rank = next(r for r in LORA_RANKS if r >= max(self.ranks, default=1))
        # vLLM's CPU LoRA ops index the slots with the bare base's -1, i.e. the last slot: one more slot, never
        # filled (zeros), keeps base rows of a mixed batch the bare base
        with_base = spec.with_base or not spec.adapters
        self.lora_slots = len(spec.adapters) + (1 if self.platform == "cpu" and with_base else 0)
        self._adapter_toks = {a: t for a, (_, t) in zip(spec.adapters, checked)}
        self.sampling_defaults = _hf_sampling_defaults(spec.model, spec.revision)

        base = {**base_identity(spec, hf_config), "kind": "causal", "backend": "vllm", "dtype": self.options["dtype"]}
        labels = variant_labels(spec)
        paths: list[str | None] = ([None] if len(labels) > len(spec.adapters) else []) + list(spec.adapters)
        self.variants = [VariantInfo(label, dict(base) if p is None else {**base, **adapter_identity(p)}, p)
                         for label, p in zip(labels, paths)]
        self.tokens: dict[str, _Tokens] = {}
        self.loras: dict[str, Any] = {}
        self._archs = list(getattr(hf_config, "architectures", None) or [])
        self._tok = tok
        self._start()

    # --- checks and options ---------------------------------------------------------------
    def _check_adapter(self, path: str, cfg: dict[str, Any], tok: Any, shapes: dict[str, list[int]] | None
                       ) -> tuple[int, Any | None]:
        """(its rank, its own tokenizer if it ships one): every check the engine would fail later, made now."""
        rank = _adapter_rank(path, cfg)
        if shapes is not None:
            _check_adapter_fits(path, cfg, shapes, self.spec.model)
        return rank, _check_tokenizer(path, tok, self.spec)

    def _resolve_options(self, spec: Any, hf_config: Any) -> dict[str, Any]:
        """--backend-option values with this platform's defaults filled in (what describe() records)."""
        opts = dict(spec.backend_options)
        cpu = self.platform == "cpu"
        model_len = int(getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "n_positions", None) or 2048)
        out = {
            "max_model_len": opts.get("max_model_len") or model_len,
            "tensor_parallel_size": opts.get("tensor_parallel_size", 1),
            "enforce_eager": opts.get("enforce_eager", cpu),
            "gpu_memory_utilization": opts.get("gpu_memory_utilization", 0.3 if cpu else 0.9),
            "kv_cache_gib": opts.get("kv_cache_gib", CPU_KV_GIB if cpu else None),
            "dtype": opts.get("dtype") or spec.dtype,
        }
        for key in ("max_model_len", "tensor_parallel_size", "kv_cache_gib"):
            if out[key] is not None and out[key] < 1:
                raise HarnessError(f"--backend-option {key}={out[key]}: must be >= 1")
        if not 0 < out["gpu_memory_utilization"] <= 1:
            raise HarnessError(f"--backend-option gpu_memory_utilization={out['gpu_memory_utilization']}: must be in (0, 1]")
        if out["dtype"] not in ("float32", "float16", "bfloat16", "auto"):
            raise HarnessError(f"--backend-option dtype={out['dtype']}: use float32, float16, bfloat16 or auto")
        return out

    def _engine_kwargs(self) -> dict[str, Any]:
        spec, o = self.spec, self.options
        kw: dict[str, Any] = {
            "model": spec.model, "tokenizer": spec.model, "revision": spec.revision,
            "trust_remote_code": spec.trust_remote_code, "dtype": o["dtype"], "max_model_len": o["max_model_len"],
            "tensor_parallel_size": o["tensor_parallel_size"], "enforce_eager": o["enforce_eager"],
            "gpu_memory_utilization": o["gpu_memory_utilization"], "enable_prefix_caching": True, "seed": 0,
            "generation_config": "vllm",  # the hf backend's settings only: no defaults from the model's file
            "logits_processors": [NO_REPEAT_NGRAM],
        }
        if spec.adapters:
            kw.update(enable_lora=True, max_loras=self.lora_slots, max_cpu_loras=self.lora_slots,
                      max_lora_rank=self.lora_rank, lora_target_modules=self.lora_targets)
        if spec.load_in_4bit:
            kw["quantization"] = "bitsandbytes"
        if self.platform == "cpu":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(o["kv_cache_gib"])
        elif o["kv_cache_gib"]:
            kw["kv_cache_memory_bytes"] = int(o["kv_cache_gib"]) << 30
        if self.platform == "cuda" and ":" in spec.device and o["tensor_parallel_size"] == 1:
            os.environ["CUDA_VISIBLE_DEVICES"] = spec.device.split(":", 1)[1]
        return kw

    # --- engine ---------------------------------------------------------------------------
    def _start(self) -> None:
        """Start the engine and load every adapter into it, so a bad adapter fails here, not mid-run."""
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        kw = self._engine_kwargs()
        self._reaper = _start_reaper()
        try:
            self.llm = LLM(**kw)
        except ValueError as e:  # vLLM's config checks, made in this process before anything is spawned
            self.close()
            text = str(e)
            if "are not supported for now" in text:
                archs = ", ".join(self._archs) or "unknown"
                raise HarnessError(f"--model {self.spec.model}: vLLM cannot load architecture {archs} (not in its model "
                                   "registry, nor servable through its Transformers backend); use --backend hf") from None
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(e).__name__]
            msg = next((ln.removeprefix("Value error, ") for ln in lines if ln.startswith("Value error,")), lines[0])
            raise HarnessError(f"--backend vllm: the engine did not start ({msg[:200]})") from None
        except BaseException:
            self.close()
            raise
        max_len = self.options["max_model_len"]
        for v in self.variants:
            tok = self._adapter_toks.get(v.adapter_path or "") or self._tok
            self.tokens[v.label] = _Tokens(tok, max_len)
        for i, v in enumerate(x for x in self.variants if x.adapter_path):
            req = LoRARequest(v.label, i + 1, str(Path(v.adapter_path or "").resolve()))
            try:
                self.llm.llm_engine.add_lora(req)
            except (ValueError, RuntimeError) as e:
                self.close()
                raise HarnessError(f"--adapter {v.adapter_path}: vLLM cannot load it "
                                   f"({str(e).strip().splitlines()[0][:200]}); use --backend hf") from None
            self.loras[v.label] = req

    def close(self) -> None:
        """Shut the engine's processes down and reap them (idempotent)."""
        llm, self.llm = self.llm, None
        reaper, self._reaper = self._reaper, None
        if llm is None:
            if reaper is not None:
                _stop_reaper(reaper)
            return
        core = llm.llm_engine.engine_core
        manager = getattr(getattr(core, "resources", None), "engine_manager", None)
        procs = list(getattr(manager, "processes", None) or [])
        try:
            core.shutdown()
        finally:
            for p in procs:  # reap what vLLM had to kill, so no zombie outlives the session
                p.join(timeout=30)
            if reaper is not None:
                _stop_reaper(reaper)

    # --- the Session protocol -------------------------------------------------------------
    def model_for(self, label: str) -> VariantModel:
        v = next((v for v in self.variants if v.label == label), None)
        if v is None:
            raise RuntimeError(f"no variant {label!r}")
        return VariantModel(self, label, v.identity)

    def check(self, task: str, requests: list[Request]) -> None:
        """Refuse, before the run starts, what this engine cannot answer as the hf backend would (evaluate.run asks
        with each task's first requests; the flags that decide it apply to every request alike)."""
        for r in requests:
            problem = self._refusal(r, self.lm_head_adapters)
            if problem:
                raise HarnessError(f"{problem} (task {task})")

    def _refusal(self, r: Request, lm_head_adapters: list[str]) -> str | None:
        if isinstance(r, Generate) and r.num_beams > 1:
            return (f"--num-beams {r.num_beams}: the vllm backend has no beam search that scores like transformers' "
                    "(vLLM's LLM.beam_search divides by the prompt's length too and never stops early); use --backend hf")
        if isinstance(r, LogLikelihood) and lm_head_adapters:
            return (f"--adapter {lm_head_adapters[0]}: adapts lm_head (or names its modules by pattern), and vLLM "
                    "leaves an lm_head LoRA out of prompt log-probs (vllm-project/vllm#51594); use --backend hf for "
                    "log-likelihood tasks")
        if not isinstance(r, (Generate, LogLikelihood)):
            return f"--backend vllm: cannot answer {r.kind} requests (use --backend hf)"
        return None

    def answer(self, kind: str, items: list[tuple[str, Request]]) -> list[Answer]:
        if self.llm is None:
            raise RuntimeError("the vllm session is closed")
        paths = {v.label: v.adapter_path for v in self.variants}
        for label, r in items:
            problem = self._refusal(r, [a for a in self.lm_head_adapters if a == paths.get(label)])
            if problem:
                raise HarnessError(problem)
        if kind == "generate":
            return self._generate(items)  # type: ignore[arg-type]
        if kind == "loglikelihood":
            return self._loglikelihood(items)  # type: ignore[arg-type]
        raise RuntimeError(f"answer({kind!r}) on a batch of {items[0][1].kind if items else 'no'} requests")

    def describe(self) -> dict[str, Any]:
        import vllm

        out: dict[str, Any] = {"name": "vllm", "vllm": vllm.__version__, "platform": self.platform, **self.options,
                               "prefix_caching": True}
        if self.spec.adapters:
            out.update(max_loras=self.lora_slots, max_lora_rank=self.lora_rank, lora_target_modules=self.lora_targets)
        if self.spec.load_in_4bit:
            out["quantization"] = "bitsandbytes"
        return out

    # --- generation -----------------------------------------------------------------------
    def _sampling_params(self, r: Generate) -> Any:
        from vllm import SamplingParams

        kw: dict[str, Any] = {"max_tokens": r.max_new_tokens, "n": r.n, "skip_special_tokens": True,
                              "repetition_penalty": self.sampling_defaults["repetition_penalty"]}
        if r.stop:
            kw["stop"] = list(r.stop)
        if r.no_repeat_ngram_size > 0:
            kw["extra_args"] = {"no_repeat_ngram_size": r.no_repeat_ngram_size}
        if r.temperature > 0:
            kw.update(temperature=r.temperature, top_p=r.top_p, top_k=self.sampling_defaults["top_k"], seed=r.seed)
        else:
            kw["temperature"] = 0.0
        return SamplingParams(**kw)

    def _generate(self, items: list[tuple[str, Generate]]) -> list[list[str]]:
        from vllm.inputs import TokensPrompt

        params = [self._sampling_params(r) for _, r in items]
        prompts = [TokensPrompt(prompt_token_ids=self.tokens[label].prompt_ids(r)) for label, r in items]
        outs = self.llm.generate(prompts, params, lora_request=[self.loras.get(label) for label, _ in items],
                                 use_tqdm=False)
        answers = []
        for (label, r), o in zip(items, outs):
            tok = self.tokens[label].tokenizer
            texts = [tok.decode(list(c.token_ids), skip_special_tokens=True) for c in sorted(o.outputs, key=lambda c: c.index)]
            answers.append([cut_at_stop(t, r.stop) for t in texts])
        return answers

    # --- log-likelihood -------------------------------------------------------------------
    def _loglikelihood(self, items: list[tuple[str, LogLikelihood]]) -> list[tuple[float, bool]]:
        """Sum of the continuation tokens' prompt log-probs; greedy when each is the top-1 token at its position."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        room = self.options["max_model_len"] - 1  # the engine generates one token after the prompt
        seqs = []
        for label, r in items:
            full, n = self.tokens[label]._tokens(r)
            if len(full) > room:  # only requests longer than the context: keep their end
                full = full[-room:]
                n = min(n, len(full) - 1)
            seqs.append((full, n))
        out: list[tuple[float, bool]] = [(0.0, True)] * len(items)
        live = [i for i, (_, n) in enumerate(seqs) if n > 0]
        if not live:
            return out
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        res = self.llm.generate([TokensPrompt(prompt_token_ids=seqs[i][0]) for i in live], params,
                                lora_request=[self.loras.get(items[i][0]) for i in live], use_tqdm=False)
        for i, o in zip(live, res):
            full, n = seqs[i]
            score, greedy = 0.0, True
            for tok_id, lps in zip(full[-n:], o.prompt_logprobs[-n:]):
                lp = lps[tok_id]
                score += lp.logprob
                greedy = greedy and lp.rank == 1
            out[i] = (float(score), greedy)
        return out


class VLLMBackend(Backend):
    name = "vllm"
    answers = ("generate", "loglikelihood")
    extra = "vllm"
    requires = ("vllm",)
    summary = "vLLM: one engine serves the base and every LoRA adapter in mixed batches (paged KV cache, prefix caching)"
    options = {
        "gpu_memory_utilization": BackendOption(
            float, "share of GPU memory vLLM takes for weights, activations and KV cache (default 0.9; on CPU the "
                   "share of RAM it may reserve, default 0.3, unused while kv_cache_gib is set)"),
        "max_model_len": BackendOption(
            int, "context length (default: the model's max_position_embeddings, the hf backend's limit); longer "
                 "prompts keep their last max_model_len - max_new_tokens tokens"),
        "tensor_parallel_size": BackendOption(int, "GPUs the model is split over", 1),
        "enforce_eager": BackendOption(
            bool, "no CUDA graphs or torch.compile (default: on for CPU, where compiling costs more than it saves on "
                  "an evaluation; off on GPU)"),
        "kv_cache_gib": BackendOption(
            int, f"GiB of KV cache: on CPU sets VLLM_CPU_KVCACHE_SPACE (default {CPU_KV_GIB}); on GPU sets "
                 "kv_cache_memory_bytes (overrides gpu_memory_utilization)"),
        "dtype": BackendOption(str, "dtype of weights and activations: float32, float16, bfloat16 or auto "
                                    "(default: --dtype)"),
    }

    def open(self, spec: Any) -> VLLMSession:
        return VLLMSession(spec)


def _no_repeat_ngram_class() -> type:
    """transformers' no_repeat_ngram_size as a vLLM logits processor: a token that would repeat an n-gram of the
    prompt or the output so far is banned (built on first use: this module imports without vLLM)."""
    import torch
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    def banned(size: int, seq: list[int]) -> list[int]:
        if len(seq) + 1 < size:
            return []
        prefix = seq[len(seq) - size + 1:] if size > 1 else []
        return [seq[i + size - 1] for i in range(len(seq) - size + 1) if seq[i:i + size - 1] == prefix]

    class NoRepeatNGram(AdapterLogitsProcessor):
        def is_argmax_invariant(self) -> bool:
            return False

        def new_req_logits_processor(self, params: Any) -> Any:
            size = int((params.extra_args or {}).get("no_repeat_ngram_size", 0))
            if size <= 0:
                return None

            def apply(prompt_ids: list[int], output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
                ban = banned(size, list(prompt_ids) + list(output_ids))
                if ban:
                    logits[ban] = float("-inf")
                return logits

            return apply

    NoRepeatNGram.__module__ = __name__
    return NoRepeatNGram


def __getattr__(name: str) -> Any:
    """`NoRepeatNGram`, the logits processor the engine loads by name (NO_REPEAT_NGRAM), made on first access."""
    if name == "NoRepeatNGram":
        cls = _no_repeat_ngram_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
