"""Bench: ARC-Easy + WinoGrande through the harness and through lm-eval 0.4.13, same model, same rows, same run.

A 124M-parameter GPT-2-shaped model (random init, the real GPT-2 tokenizer from ../shared/data/gpt2-bpe) scores
the first --rows rows of the real ARC-Easy test and WinoGrande dev files. Each side runs in its own subprocess
(peak RSS from getrusage), with the same torch thread count and batch size, model loading included. Prints
requests/s of each, the speed ratio (target >= 3x), whether every per-doc acc/acc_norm is identical, the largest
per-choice log-likelihood difference, and peak memory. `--backends hf,vllm` adds a harness column per backend
(vLLM's engine start is included in its wall time and also shown apart: its answering time alone).

    .venv/bin/python bench/bench_forgetting.py                # 500 rows per task (~10 min on a shared 2-core CPU)
    .venv/bin/python bench/bench_forgetting.py --rows 100     # quick look
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
TASKS = ("arc_easy", "winogrande")
NOT_COUNTED = "; vLLM computes in its engine process, whose CPU time is not counted"


def build_model(path: Path) -> Path:
    """GPT-2 small's shape (12 layers, 768 wide, 50257 vocab, 124M parameters), random weights, saved once."""
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from harness.testing.tiny import gpt2_tokenizer

    tok = gpt2_tokenizer(SHARED / "gpt2-bpe" / "lora-vocab")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg.architectures = ["GPT2LMHeadModel"]
    model = GPT2LMHeadModel(cfg)
    n = sum(p.numel() for p in model.parameters())
    print(f"built GPT-2-shaped model: {n / 1e6:.0f}M parameters -> {path}", file=sys.stderr)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def prepare_data(work: Path) -> tuple[Path, Path]:
    """A --data-dir for the harness (links to the official files) and hub-layout json files for lm-eval's YAMLs."""
    import lm_eval

    data = work / "data"
    for sub, files in (("arc", ["ARC-Easy-Test.jsonl"]), ("winogrande", ["dev.jsonl", "dev-labels.lst"])):
        (data / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            link = data / sub / f
            if not link.exists():
                link.symlink_to(SHARED / sub / f)
    rows = [json.loads(x) for x in (SHARED / "arc" / "ARC-Easy-Test.jsonl").read_text().splitlines() if x.strip()]
    flat = work / "arc_easy.jsonl"
    flat.write_text("".join(json.dumps({"id": r["id"], "question": r["question"]["stem"], "answerKey": r["answerKey"],
                                        "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                                                    "label": [c["label"] for c in r["question"]["choices"]]}}) + "\n"
                            for r in rows))
    lm_tasks = Path(lm_eval.__file__).parent / "tasks"
    ydir = work / "yaml"
    ydir.mkdir(exist_ok=True)
    (ydir / "arc_easy.yaml").write_text(
        f"include: {lm_tasks / 'arc/arc_easy.yaml'}\ntag: []\ntask: local_arc_easy\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {flat}\ntraining_split: null\nvalidation_split: null\n")
    (ydir / "winogrande.yaml").write_text(
        f"include: {lm_tasks / 'winogrande/default.yaml'}\ntask: local_winogrande\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    validation: {SHARED / 'winogrande' / 'dev.jsonl'}\n"
        "training_split: null\n")
    return data, ydir


# --- the two sides, each run in a fresh subprocess -------------------------------------------------------------


def side_ours(model: str, data: str, rows: int, batch: int, out: str, backend: str = "hf") -> dict:
    from harness.evaluate import RunSpec, run
    from harness.models.loading import ModelSpec
    from harness.task import TaskConfig

    t0, c0 = time.perf_counter(), time.process_time()
    opts = {"kv_cache_gib": 2} if backend == "vllm" else {}
    [path] = run(RunSpec(model=ModelSpec(model=model, batch_size=batch, backend=backend, backend_options=opts),
                         tasks=list(TASKS),
                         task_cfg=TaskConfig(data_dir=Path(data), limit=rows), output_dir=Path(out), quiet=True))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = json.loads(path.read_text())
    per_doc, requests = {}, 0
    for t in TASKS:
        samples = [json.loads(x) for x in (path.parent / "samples" / f"{t}.jsonl").read_text().splitlines()]
        requests += sum(len(s["loglikelihoods"]) for s in samples)
        per_doc[t] = [{"metrics": s["metrics"], "lls": s["loglikelihoods"]} for s in samples]
    return {"seconds": seconds, "cpu": cpu, "requests": requests, "per_doc": per_doc,
            "answer_s": sum(res["tasks"][t]["wall_time_s"] for t in TASKS),
            "metrics": {t: {m: v["value"] for m, v in res["tasks"][t]["metrics"].items()} for t in TASKS}}


def side_lm_eval(model: str, yaml_dir: str, rows: int, batch: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    t0, c0 = time.perf_counter(), time.process_time()
    lm = HFLM(pretrained=model, batch_size=batch, device="cpu", dtype="float32")
    out = simple_evaluate(model=lm, tasks=[f"local_{t}" for t in TASKS], log_samples=True, limit=rows,
                          task_manager=TaskManager(include_path=yaml_dir, include_defaults=False))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_doc, requests = {}, 0
    for t in TASKS:
        samples = sorted(out["samples"][f"local_{t}"], key=lambda s: s["doc_id"])
        requests += sum(len(s["resps"]) for s in samples)
        per_doc[t] = [{"metrics": {m: s[m] for m in s["metrics"]}, "lls": [float(r[0]) for r in s["filtered_resps"]]}
                      for s in samples]
    metrics = {t: {k.split(",")[0]: v for k, v in out["results"][f"local_{t}"].items()
                   if k.endswith(",none") and "_stderr" not in k} for t in TASKS}
    return {"seconds": seconds, "cpu": cpu, "requests": requests, "per_doc": per_doc, "metrics": metrics}


def _child(args: argparse.Namespace) -> None:
    import resource

    import torch

    torch.set_num_threads(args.threads)
    import datasets  # noqa: F401 - both sides pay their imports before the clock starts
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    if args.side != "lm-eval":
        r = side_ours(args.model, args.data, args.rows, args.batch_size, args.out, args.side)
    else:
        r = side_lm_eval(args.model, args.yaml, args.rows, args.batch_size)
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps(r))


def _spawn(side: str, args: argparse.Namespace, model: Path, data: Path, ydir: Path, work: Path) -> dict:
    result = work / f"{side}.json"
    cmd = [sys.executable, __file__, "--child", side, "--model", str(model), "--data", str(data), "--yaml", str(ydir),
           "--rows", str(args.rows), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--out", str(work / f"out-{side}"), "--result", str(result)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(args.threads)}
    print(f"running {side} ...", file=sys.stderr)
    log = work / f"{side}.log"
    with log.open("w") as f:
        done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{side} failed:\n" + "\n".join(log.read_text().splitlines()[-20:]))
    return json.loads(result.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=500, help="rows per task (default 500)")
    p.add_argument("--batch-size", type=int, default=16, help="requests per forward, both sides (default 16)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, both sides (default 1)")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-gpt2-124m")
    p.add_argument("--backends", default="hf", help="harness backends to measure, comma-separated (hf, vllm)")
    p.add_argument("--child", choices=["hf", "vllm", "lm-eval"], help=argparse.SUPPRESS)
    for hidden in ("--model", "--data", "--yaml", "--out", "--result"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.side = args.child
        return _child(args)
    if not (SHARED / "MANIFEST.json").exists():
        sys.exit(f"bench needs the real data at {SHARED}")
    sys.path.insert(0, str(ROOT))
    model = build_model(args.model_dir)
    with tempfile.TemporaryDirectory(prefix="bench-forgetting-") as tmp:
        work = Path(tmp)
        data, ydir = prepare_data(work)
        lm = _spawn("lm-eval", args, model, data, ydir, work)
        sides = {f"harness {b}": _spawn(b, args, model, data, ydir, work) for b in args.backends.split(",")}
    print(f"\nforgetting bench: {args.rows} rows each of {', '.join(TASKS)}; 124M GPT-2 shape; batch {args.batch_size}; "
          f"{args.threads} thread(s); model loading included, imports excluded")
    print(f"{'':14}{'requests':>10}{'wall s':>9}{'req/s':>8}{'CPU s':>9}{'req/CPU-s':>11}{'peak RSS MB':>13}")
    for name, r in (*sides.items(), ("lm-eval", lm)):
        print(f"{name:14}{r['requests']:>10}{r['seconds']:>9.1f}{r['requests'] / r['seconds']:>8.1f}{r['cpu']:>9.1f}"
              f"{r['requests'] / r['cpu']:>11.1f}{r['peak_rss_mb']:>13.0f}")
    for name, ours in sides.items():
        identical = all(len(ours["per_doc"][t]) == len(lm["per_doc"][t]) for t in TASKS) and all(
            a["metrics"] == b["metrics"] for t in TASKS for a, b in zip(ours["per_doc"][t], lm["per_doc"][t]))
        max_diff = max(abs(x - y) for t in TASKS for a, b in zip(ours["per_doc"][t], lm["per_doc"][t])
                       for x, y in zip(a["lls"], b["lls"]))
        print(f"{name} / lm-eval: {lm['seconds'] / ours['seconds']:.2f}x by wall time, {lm['cpu'] / ours['cpu']:.2f}x by "
              f"CPU time of this process (target >= 3x{NOT_COUNTED if 'vllm' in name else ''}); answering alone "
              f"{ours['answer_s']:.1f} s")
        print(f"  scores: {'identical' if identical else 'DIFFERENT'} per-doc acc/acc_norm; largest per-choice "
              f"log-likelihood difference {max_diff:.2e}; peak memory ratio {ours['peak_rss_mb'] / lm['peak_rss_mb']:.2f}")
        for t in TASKS:
            print(f"    {t}: {name} {ours['metrics'][t]}  lm-eval {lm['metrics'][t]}")


if __name__ == "__main__":
    main()
