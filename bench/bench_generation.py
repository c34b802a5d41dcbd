"""Bench: generation with lm-eval 0.4.13 (its HFLM), `--backend hf` and `--backend vllm`, on lm-eval's own gsm8k.

All three answer lm-eval's gsm8k prompts (its YAML, its few-shot sampler and seed, its stop strings) for the first
--rows rows of the real GSM8K test split (a local YAML points lm-eval's gsm8k at ../shared/data/gsm8k); the harness
sides go through the `lm-eval:` bridge task and the runner, as `harness run --tasks lm-eval:...` would. The model is
a 124M GPT-2-shaped random model with the real GPT-2 BPE (the early workload: a small trained one). Four workloads:

  prefill: 5-shot, 64 new tokens (prompts of ~900 tokens: prompt processing dominates)
  decode:  0-shot, 128 new tokens, batch 16 (short prompts: token-by-token decoding dominates)
  cot:     lm-eval's gsm8k_cot: the same 8 exemplars before every question, 64 new tokens, batch 8
  early:   0-shot, 128 new tokens, batch 8, on a small trained model whose answers stop early and at different
           lengths (it writes "#### N" and then "Question:", lm-eval's stop string): what continuous batching is for

A random model's rows all run to the token limit (it repeats itself and never writes a stop string), hence the
trained model of `early`: a 2-layer GPT-2 (128 wide, a 1024-token BPE trained here on GSM8K-format text) trained for
300 steps on the project's own word problems (harness.testing.tiny), built once (~2 min) and kept in --early-model-dir.

Each side runs in its own subprocess and loads its model (or starts its engine) once, timed apart from the
workloads; building lm-eval's task (mapping the whole test split) is done before each workload's clock starts.
Printed per workload: prompt and new tokens, seconds, new tokens/s, the ratios of the three, and how many outputs
are identical to lm-eval's (each differing row listed). Timings are measured, never asserted.

    /tmp/vv/bin/python bench/bench_generation.py                 # 16 rows (CPU: ~15 min on 2 busy cores)
    /tmp/vv/bin/python bench/bench_generation.py --quick         # 4 rows, 16 / 32 new tokens: a smoke run
    python bench/bench_generation.py --device cuda --rows 64     # on a GPU machine, unchanged
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
from typing import Any

from bench_forgetting import build_model  # the one 124M GPT-2 builder: the same model (seed 0) in every bench

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SIDES = ("lm-eval", "hf", "vllm")


def build_early_model(path: Path) -> Path:
    """A small GPT-2 trained (300 AdamW steps, seed 0) on GSM8K-format word problems, so its answers end: each is a
    line or two, "#### N", then the next "Question:". Saved once."""
    if (path / "config.json").exists():
        return path
    import random

    import torch
    from transformers import AutoModelForCausalLM

    from harness.testing.tiny import build_causal_lm, train_tokenizer, word_problem

    rng = random.Random(0)
    texts = [f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in (word_problem(rng) for _ in range(4000))]
    real = [json.loads(line) for line in (SHARED / "gsm8k" / "train.jsonl").read_text().splitlines()]
    # the BPE also sees real GSM8K text, so the real prompts of the workload tokenize into words, not bytes
    tok = train_tokenizer(texts + [f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in real], 1024)
    build_causal_lm(path, tok, d_model=128, n_layer=2, max_positions=1024)
    model = AutoModelForCausalLM.from_pretrained(path)
    data = torch.tensor(tok("".join(texts))["input_ids"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        starts = torch.randint(0, len(data) - 257, (8,), generator=gen)
        x = torch.stack([data[i:i + 256] for i in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"trained the early-stopping model: loss {loss.item():.2f} after 300 steps -> {path}", file=sys.stderr)
    model.save_pretrained(path)
    return path


def workloads(quick: bool) -> dict[str, dict[str, Any]]:
    until = ["Question:", "</s>", "<|im_end|>"]
    return {"prefill": {"fewshot": 5, "max_new": 16 if quick else 64, "batch": 8, "yaml": "gsm8k.yaml", "until": until},
            "decode": {"fewshot": 0, "max_new": 32 if quick else 128, "batch": 16, "yaml": "gsm8k.yaml", "until": until},
            "cot": {"fewshot": 8, "max_new": 16 if quick else 64, "batch": 8, "yaml": "gsm8k-cot.yaml",
                    "until": ["Q:", "</s>", "<|im_end|>"]},
            "early": {"fewshot": 0, "max_new": 32 if quick else 128, "batch": 8, "yaml": "gsm8k.yaml", "until": until,
                      "model": "early"}}


def write_yamls(ydir: Path, loads: dict[str, dict[str, Any]]) -> None:
    """One lm-eval task per workload: lm-eval's gsm8k (or gsm8k_cot) YAML, its data read from ../shared/data/gsm8k."""
    import lm_eval

    tasks = Path(lm_eval.__file__).parent / "tasks" / "gsm8k"
    ydir.mkdir(parents=True, exist_ok=True)
    for name, w in loads.items():
        (ydir / f"{name}.yaml").write_text(
            f"include: {tasks / w['yaml']}\ntag: []\ntask: bench_gsm8k_{name}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    train: {SHARED / 'gsm8k' / 'train.jsonl'}\n"
            f"    test: {SHARED / 'gsm8k' / 'test.jsonl'}\nnum_fewshot: {w['fewshot']}\n"
            f"generation_kwargs:\n  until: {json.dumps(w['until'])}\n  do_sample: false\n"
            f"  temperature: 0.0\n  max_gen_toks: {w['max_new']}\n")


# --- the three sides, each in a fresh subprocess ----------------------------------------------------------------------
def run_lm_eval(a: argparse.Namespace, loads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    out: dict[str, Any] = {"start_s": 0.0, "runs": {}}
    tm = TaskManager(include_path=a.yaml, include_defaults=False)
    for group, names in by_model(loads).items():
        t0 = time.perf_counter()
        lm = HFLM(pretrained=model_path(a, group), batch_size=1, device=a.device, dtype="float32")
        out["start_s"] += time.perf_counter() - t0
        for name in names:
            out["runs"][name] = lm_eval_workload(lm, tm, name, loads[name], a)
    return out


def lm_eval_workload(lm: Any, tm: Any, name: str, w: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import get_task_dict

    lm.batch_size_per_gpu = w["batch"]
    task = get_task_dict([f"bench_gsm8k_{name}"], tm)  # built (its dataset mapped) before the clock starts
    t = time.perf_counter()
    res = simple_evaluate(model=lm, tasks=list(task.values()), limit=a.rows, log_samples=True, task_manager=tm)
    seconds = time.perf_counter() - t
    by_doc = {s["doc_id"]: s for s in res["samples"][f"bench_gsm8k_{name}"]}  # one sample per doc and filter
    samples = [by_doc[i] for i in sorted(by_doc)]
    return {"seconds": seconds, "prompts": [s["arguments"][0][0] for s in samples],
            "texts": [s["resps"][0][0] for s in samples]}


def run_harness(a: argparse.Namespace, loads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from harness.backends import get_backend
    from harness.models.loading import ModelSpec

    out: dict[str, Any] = {"start_s": 0.0, "runs": {}}
    for group, names in by_model(loads).items():
        t0 = time.perf_counter()
        session = get_backend(a.side)().open(ModelSpec(model=model_path(a, group), device=a.device, backend=a.side,
                                                       batch_size=1))
        out["start_s"] += time.perf_counter() - t0
        out.setdefault("engine", session.describe())
        try:
            for name in names:
                out["runs"][name] = harness_workload(session, name, loads[name], a)
        finally:
            session.close()
    return out


def harness_workload(session: Any, name: str, w: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    from harness.models.loading import model_key
    from harness.registry import make_tasks
    from harness.runner import run_mixed, run_requests
    from harness.task import CAUSAL, TaskConfig

    [v] = session.variants
    [task] = make_tasks(f"lm-eval:bench_gsm8k_{name}", TaskConfig(limit=a.rows, options={"include_path": a.yaml}))
    docs = task.docs()[: a.rows]  # lm-eval builds the task (maps its dataset) before the clock starts here too
    t = time.perf_counter()
    reqs = [r for d in docs for r in task.requests(d, CAUSAL)]
    session.batch_size = w["batch"]
    if session.mixes_variants:
        answers = run_mixed(session, {v.label: (model_key(v.identity), reqs)}, quiet=True)[v.label]
    else:
        model = session.model_for(v.label)
        model.batch_size = w["batch"]  # hf: the rows in flight (continuous batching refills them)
        answers = run_requests(model, model_key(v.identity), reqs, quiet=True)
    for d in docs:
        task.score(d, [answers[r.key()] for r in task.requests(d, CAUSAL)], CAUSAL)
    return {"seconds": time.perf_counter() - t, "prompts": [r.prompt for r in reqs],
            "texts": [answers[r.key()][0] for r in reqs]}


def by_model(loads: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Workload names per model they run on ("default": the 124M random model; "early": the trained one)."""
    out: dict[str, list[str]] = {}
    for name, w in loads.items():
        out.setdefault(w.get("model", "default"), []).append(name)
    return out


def model_path(a: argparse.Namespace, group: str) -> str:
    return str(a.early_model if group == "early" else a.model)


def child(a: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(a.threads)
    # every side pays its imports before the clock starts (an engine's own processes import inside its start time)
    import transformers  # noqa: F401
    from lm_eval.models import huggingface  # noqa: F401

    if a.side != "lm-eval":
        import peft  # noqa: F401

        import harness.models.causal  # noqa: F401
        import harness.models.loading  # noqa: F401
    if a.side == "vllm":
        import vllm  # noqa: F401
    loads = chosen(a)
    result = run_lm_eval(a, loads) if a.side == "lm-eval" else run_harness(a, loads)
    Path(a.result).write_text(json.dumps(result))


def spawn(side: str, a: argparse.Namespace, model: Path, ydir: Path, work: Path) -> dict[str, Any]:
    result = work / f"{side}.json"
    cmd = [sys.executable, __file__, "--child", side, "--model", str(model), "--early-model", str(a.early_model_dir),
           "--yaml", str(ydir), "--rows", str(a.rows),
           "--device", a.device, "--threads", str(a.threads), "--result", str(result), "--workloads", a.workloads] + \
        (["--quick"] if a.quick else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(a.threads)}
    # vLLM's CPU worker binds one OpenMP thread per core it is given; leave it as many as the torch sides get
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", str(max(0, (os.cpu_count() or 1) - a.threads)))
    print(f"running {side} ...", file=sys.stderr)
    log = work / f"{side}.log"
    with log.open("w") as f:
        done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{side} failed:\n" + "\n".join(log.read_text().splitlines()[-30:]))
    return dict(json.loads(result.read_text()))


# --- report ---------------------------------------------------------------------------------------------------------
def count_tokens(model: Path, run: dict[str, Any], max_new: int) -> tuple[int, int]:
    """(prompt tokens the model saw, new tokens it wrote): prompts cut as every side cuts them (1024 - max_new)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    keep = 1024 - max_new
    prompt = sum(min(keep, len(tok(p)["input_ids"])) for p in run["prompts"])
    new = sum(len(tok(t)["input_ids"]) for t in run["texts"])
    return prompt, new


def chosen(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    loads = workloads(a.quick)
    return {n: loads[n] for n in a.workloads.split(",")}


def report(results: dict[str, dict[str, Any]], model: Path, a: argparse.Namespace) -> None:
    loads = chosen(a)
    print(f"\ngeneration bench: lm-eval gsm8k prompts, first {a.rows} rows of the GSM8K test split; 124M GPT-2 shape, "
          f"real GPT-2 BPE; --device {a.device}; {a.threads} compute thread(s) per side")
    print("start (model load / engine start, not in the workloads): " +
          ", ".join(f"{s} {results[s]['start_s']:.1f}s" for s in SIDES))
    print(f"vllm engine: {json.dumps(results['vllm'].get('engine', {}))}")
    for name, w in loads.items():
        print(f"\n{name}: {w['yaml']}, {w['fewshot']}-shot, {w['max_new']} new tokens, batch {w['batch']}, "
              f"stop at {w['until']}" + (" (the trained early-stopping model)" if w.get("model") == "early" else ""))
        print(f"  {'side':9}{'prompt tok':>11}{'new tok':>9}{'seconds':>9}{'new tok/s':>11}{'all tok/s':>11}"
              f"{'same as lm-eval':>17}")
        rate = {}
        ref = results["lm-eval"]["runs"][name]["texts"]
        for s in SIDES:
            run = results[s]["runs"][name]
            prompt, new = count_tokens(a.early_model_dir if w.get("model") == "early" else model, run, w["max_new"])
            rate[s] = new / run["seconds"]
            same = sum(x == y for x, y in zip(run["texts"], ref))
            print(f"  {s:9}{prompt:>11}{new:>9}{run['seconds']:>9.1f}{rate[s]:>11.1f}{(prompt + new) / run['seconds']:>11.1f}"
                  f"{f'{same}/{len(ref)}':>17}")
        print(f"  new tokens/s ratios: vllm/hf {rate['vllm'] / rate['hf']:.2f}x, vllm/lm-eval "
              f"{rate['vllm'] / rate['lm-eval']:.2f}x, hf/lm-eval {rate['hf'] / rate['lm-eval']:.2f}x")
        for s in ("hf", "vllm"):
            for i, (x, y) in enumerate(zip(results[s]["runs"][name]["texts"], ref)):
                if x != y:
                    print(f"  differs from lm-eval: {s} row {i}: {x[:70]!r} vs {y[:70]!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="GSM8K test rows (default 16; 4 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 4 rows, 16 / 32 new tokens")
    p.add_argument("--device", default="cpu", help="cpu or cuda (every side)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the hf sides; cores vLLM's CPU worker gets")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-gpt2-124m")
    p.add_argument("--early-model-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-gpt2-early-stop")
    p.add_argument("--workloads", default="prefill,decode,cot,early", help="which of the four to run")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    for hidden in ("--model", "--early-model", "--yaml", "--result"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    a = p.parse_args()
    a.rows = a.rows or (4 if a.quick else 16)
    if a.child:
        a.side = a.child
        return child(a)
    if not (SHARED / "MANIFEST.json").exists():
        sys.exit(f"bench needs the real data at {SHARED}")
    model = build_model(a.model_dir)
    if "early" in a.workloads.split(","):
        build_early_model(a.early_model_dir)
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        work = Path(tmp)
        write_yamls(work / "yaml", chosen(a))
        results = {s: spawn(s, a, model, work / "yaml", work) for s in SIDES}
    report(results, model, a)


if __name__ == "__main__":
    main()
