"""Bench: four LoRA adapters on one base, evaluated in one run versus four runs of one adapter each, per backend.

The base is a ~124M-parameter Llama-shaped model (12 layers, 768 wide, tied embeddings, random weights) with the real
GPT-2 BPE; the four adapters (rank 16 on every linear layer) have random, non-zero B matrices. Every run is a real
`harness run` subprocess on the same rows of the real GSM8K test split (--tasks, --rows, --max-new-tokens), each in its
own output directory (no answer store shared between runs). Printed per backend and batch size: wall seconds of the
one run with all four adapters, of a run with one adapter (the mean of four), and their ratio (targets: vLLM <= 1.5x,
hf <= 2x at batch 1-4); the same for the answering time alone (results.json wall_time_s: the tasks, without start-up);
whether every variant's outputs are the same either way. Both backends mix the four adapters in every batch over one
loaded base (vLLM's multi-LoRA; hf through PEFT's adapter_names).

    /tmp/vv/bin/python bench/bench_adapters.py                    # 16 rows, 32 new tokens, batch 16
    /tmp/vv/bin/python bench/bench_adapters.py --backends hf --batch-sizes 1,4,16
    /tmp/vv/bin/python bench/bench_adapters.py --quick            # 4 rows, 16 new tokens
    /tmp/vv/bin/python bench/bench_adapters.py --backends vllm --device cuda --rows 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
HARNESS = str(Path(sys.executable).with_name("harness"))
N_ADAPTERS = 4


def build(root: Path) -> tuple[Path, list[Path]]:
    """The base and four adapters, made once under root (seeded: the same files every time)."""
    base, adapters = root / "base", [root / f"adapter{i}" for i in range(1, N_ADAPTERS + 1)]
    if (base / "config.json").exists() and all((a / "adapter_config.json").exists() for a in adapters):
        return base, adapters
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from harness.testing.tiny import gpt2_tokenizer

    tok = gpt2_tokenizer(SHARED / "gpt2-bpe" / "lora-vocab")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                      num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    cfg.architectures = ["LlamaForCausalLM"]
    model = AutoModelForCausalLM.from_config(cfg)
    print(f"built Llama-shaped base: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters -> {base}",
          file=sys.stderr)
    model.save_pretrained(base)
    tok.save_pretrained(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for i, out in enumerate(adapters):
        peft = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                              LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets))
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        peft.save_pretrained(out)
    return base, adapters


def harness_run(backend: str, base: Path, adapters: list[Path], out: Path, a: argparse.Namespace) -> tuple[float, Path]:
    """One `harness run` subprocess; (wall seconds, its output directory)."""
    cmd = [HARNESS, "run", "--backend", backend, "--model", str(base), *[x for p in adapters for x in ("--adapter", str(p))],
           "--tasks", a.tasks, "--data-dir", str(SHARED), "--limit", str(a.rows), "--max-new-tokens", str(a.max_new_tokens),
           "--batch-size", str(a.batch_size), "--device", a.device, "-o", str(out), "--run-name", "r", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(a.threads)}
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", str(max(0, (os.cpu_count() or 1) - a.threads)))
    print(f"{backend}: {len(adapters)} adapter(s) ...", file=sys.stderr)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds, out


def variant_outputs(out: Path) -> dict[str, dict[str, list[object]]]:
    """{variant label: {task: its samples records}} of one run's directories (records hold the outputs and scores)."""
    res: dict[str, dict[str, list[object]]] = {}
    for results in sorted(out.glob("r*/results.json")):
        rec = json.loads(results.read_text())
        samples = results.parent / "samples"
        res[rec["label"]] = {t: [json.loads(x) for x in (samples / f"{t.replace('/', '_')}.jsonl").read_text().splitlines()]
                             for t in rec["tasks"]}
    return res


def answering_seconds(out: Path) -> float:
    """Seconds the tasks took (results.json wall_time_s): shared once by variants answered in mixed batches, summed
    when they were answered in turn."""
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("r*/results.json"))]
    per_variant = [sum(e["wall_time_s"] for e in r["tasks"].values()) for r in recs]
    mixed = bool(recs) and all(r["backend"].get("mixed_batches", r["backend"]["name"] != "hf") for r in recs)
    return max(per_variant) if mixed else sum(per_variant)


def bench(backend: str, base: Path, adapters: list[Path], work: Path, a: argparse.Namespace) -> dict[str, object]:
    """All adapters in one run against one run per adapter: wall and answering seconds, and whether they agree."""
    tag = f"{backend}-b{a.batch_size}"
    together, out_all = harness_run(backend, base, adapters, work / f"{tag}-all", a)
    alone, answer_alone, outs = [], [], {}
    for p in adapters:
        s, o = harness_run(backend, base, [p], work / f"{tag}-{p.name}", a)
        alone.append(s)
        answer_alone.append(answering_seconds(o))
        outs.update(variant_outputs(o))
    return {"together": together, "one": sum(alone) / len(alone), "answer_together": answering_seconds(out_all),
            "answer_one": sum(answer_alone) / len(answer_alone), "same": variant_outputs(out_all) == outs}


TARGET = {"vllm": 1.5, "hf": 2.0}  # all adapters in one run, in multiples of the time one adapter takes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="rows of each task (default 16; 4 with --quick)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 32; 16 with --quick")
    p.add_argument("--quick", action="store_true", help="a smoke run: 4 rows, 16 new tokens")
    p.add_argument("--tasks", default="gsm8k")
    p.add_argument("--backends", default="vllm,hf")
    p.add_argument("--batch-sizes", default="16", help="comma-separated; e.g. 1,4,16 to see where mixing stops paying")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the hf runs; cores vLLM's CPU worker gets")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-llama-124m-lora")
    a = p.parse_args()
    a.rows = a.rows or (4 if a.quick else 16)
    a.max_new_tokens = a.max_new_tokens or (16 if a.quick else 32)
    if not (SHARED / "MANIFEST.json").exists():
        sys.exit(f"bench needs the real data at {SHARED}")
    base, adapters = build(a.model_dir)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as tmp:
        for backend in a.backends.split(","):
            for bs in [int(x) for x in a.batch_sizes.split(",")]:
                a.batch_size = bs
                results[(backend, bs)] = bench(backend, base, adapters, Path(tmp), a)
    print(f"\nadapters bench: {N_ADAPTERS} LoRA adapters (r=16) on a 124M Llama-shaped base; {a.tasks}, {a.rows} rows, "
          f"{a.max_new_tokens} new tokens; --device {a.device}; {a.threads} compute thread(s)")
    print(f"{'backend':9}{'batch':>6}{'1 run, 4 adapters':>19}{'1 run, 1 adapter':>18}{'ratio':>8}{'target':>8}"
          f"{'answering 4':>13}{'answering 1':>13}{'ratio':>8}  same outputs")
    for (backend, bs), r in results.items():
        together, one, at, a1 = (float(r[k]) for k in ("together", "one", "answer_together", "answer_one"))  # type: ignore[arg-type]
        print(f"{backend:9}{bs:>6}{together:>18.1f}s{one:>17.1f}s{together / one:>7.2f}x{TARGET.get(backend, 0):>7.1f}x"
              f"{at:>12.1f}s{a1:>12.1f}s{at / max(a1, 1e-9):>7.2f}x  {r['same']}")
    print("ratio: the run with all adapters over the mean run with one (wall time, start-up included; answering: the "
          "tasks alone). Four runs of one adapter each take about 4x one.")


if __name__ == "__main__":
    main()
