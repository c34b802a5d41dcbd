"""GSM8K generation through --backend openai against a local `vllm serve`, and through --backend vllm in process.

The same real GSM8K test rows (../shared/data/gsm8k), greedy, on the same weights (a tiny Llama-shaped model with the
real GPT-2 BPE, built here unless --model is given), with `concurrency` requests in flight for the API and batches of
the same size in process. Prints generated tokens/s of each (tokens counted with the model's tokenizer on the outputs,
the time is the task's wall time in results.json, so server start-up is left out), their ratio, and whether the
outputs are identical. The two engines never run at once: the server is stopped before the in-process run.

    /tmp/vv/bin/python bench/bench_api.py                      # 64 rows, 128 new tokens, concurrency 16
    /tmp/vv/bin/python bench/bench_api.py --rows 32 --concurrency 8 --json bench_api.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def build_model(root: Path) -> Path:
    from harness.testing.tiny import build_causal_lm, gpt2_tokenizer

    tok = gpt2_tokenizer(SHARED / "gpt2-bpe" / "lora-vocab")
    return build_causal_lm(root / "tiny-llama", tok, arch="llama", d_model=128, n_head=2, max_positions=1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, log: Path, max_model_len: int) -> tuple[subprocess.Popen[bytes], str]:
    """vLLM's OpenAI-compatible server (what `vllm serve` runs) on a free loopback port, in its own process group."""
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name",
           "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len",
           str(max_model_len), "--seed", "0", "--disable-uvicorn-access-log"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vllm server exited {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(2)
    stop_server(proc)
    raise SystemExit(f"vllm server not up after 900 s; see {log}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def harness_run(args: list[str]) -> None:
    from harness.cli import main

    sys.argv = ["harness", "run", *args]
    try:
        main()
    except SystemExit as e:
        if e.code:
            raise SystemExit(f"harness run {' '.join(args)} exited {e.code}") from None


def measure(run_dir: Path, tokenizer: Any) -> dict[str, Any]:
    outputs = [json.loads(x)["output"] for x in (run_dir / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    wall = json.loads((run_dir / "results.json").read_text())["tasks"]["gsm8k"]["wall_time_s"]
    tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    return {"outputs": outputs, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a causal LM directory (default: build the tiny Llama)")
    ap.add_argument("--rows", type=int, default=64, help="GSM8K test rows")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (>= 8); the in-process batch size")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    if args.concurrency < 8:
        raise SystemExit("--concurrency: use 8 or more (the comparison is about concurrent requests)")
    from transformers import AutoTokenizer

    from harness.backends import backend_names

    work = Path(tempfile.mkdtemp(prefix="bench_api."))
    model = args.model or build_model(work)
    tok = AutoTokenizer.from_pretrained(model)
    common = ["--tasks", "gsm8k", "--data-dir", str(SHARED), "--limit", str(args.rows), "--max-new-tokens",
              str(args.max_new_tokens), "-o", str(work / "runs"), "-q"]
    proc, url = start_server(model, work / "vllm.log", 1024)
    try:
        harness_run(["--backend", "openai", "--backend-option", f"base_url={url}", "--backend-option",
                     f"concurrency={args.concurrency}", "--model", "tiny", "--run-name", "api", *common])
    finally:
        stop_server(proc)
    rows: dict[str, dict[str, Any]] = {"openai": measure(work / "runs" / "api", tok)}
    if "vllm" in backend_names():
        harness_run(["--backend", "vllm", "--backend-option", "max_model_len=1024", "--backend-option", "kv_cache_gib=1",
                     "--batch-size", str(args.concurrency), "--model", str(model), "--run-name", "local", *common])
        rows["vllm"] = measure(work / "runs" / "local", tok)
    print(f"GSM8K, {args.rows} rows, greedy, max {args.max_new_tokens} new tokens, concurrency {args.concurrency}")
    for name, r in rows.items():
        print(f"  --backend {name:6s}: {r['tokens']} tokens in {r['wall_s']:.1f} s = {r['tokens_per_s']:.1f} tokens/s")
    summary: dict[str, Any] = {k: {f: v for f, v in r.items() if f != "outputs"} for k, r in rows.items()}
    if "vllm" in rows:
        ratio = rows["openai"]["tokens_per_s"] / rows["vllm"]["tokens_per_s"]
        same = rows["openai"]["outputs"] == rows["vllm"]["outputs"]
        print(f"  openai / in-process: {ratio:.2f}; outputs identical: {same}")
        summary.update(ratio=ratio, identical=same)
    else:
        print("  (no vllm backend registered: the in-process comparison needs harness/backends/vllm.py)")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "max_new_tokens": args.max_new_tokens,
                                         "concurrency": args.concurrency, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
