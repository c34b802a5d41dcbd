"""--backend openai over a faulty loopback endpoint (tests/judge_server.py serving completions from its fixed table).

About 30% of calls fail at first (429 with Retry-After, 500, replies slower than the timeout, reset connections,
truncated JSON): every request must still be answered exactly once, with the answers a fault-free run gets and
the table says. With the attempts used up the run exits 3 with the failed count and keeps what it stored; the API
key reaches no file and no byte of output, even when the server quotes it back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_main
from judge_server import JudgeServer, beaten, completion_text, token_logprob, word_tokens

from harness.backends import get_backend
from harness.backends.openai import server_stops, split_pair
from harness.errors import HarnessError
from harness.models.loading import ModelSpec
from harness.requests import Generate, LogLikelihood
from tasks.gsm8k import STOP

ROOT = Path(__file__).resolve().parent.parent
MODELS: dict[str, str | None] = {"tiny": None, "served-lora": "tiny"}
FAULTS = {"p429": 0.08, "p500": 0.07, "pslow": 0.04, "preset": 0.05, "ptrunc": 0.06}  # 30% of first attempts
N = 10


def run_cmd(url: str, out: Path, *extra: str, tasks: str = "gsm8k,arc_easy", attempts: int = 6, limit: int = N
            ) -> list[str]:
    return ["run", "--backend", "openai", "--backend-option", f"base_url={url}", "--backend-option", "timeout=0.4",
            "--backend-option", "backoff=0.005", "--backend-option", f"max_attempts={attempts}", "--model", "tiny",
            "--tasks", tasks, "--limit", str(limit), "-o", str(out), "--run-name", "r", "-q", *extra]


def samples(run_dir: Path, task: str) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines()]


def stored(out: Path) -> int:
    with sqlite3.connect(out / ".store.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM answers WHERE kind != 'endpoint'").fetchone()[0])


def expected_loglikelihood(model: str, context: str, continuation: str) -> tuple[float, bool]:
    """The table's answer, computed apart from the backend: the words that cover the continuation."""
    ctx, cont = split_pair(context, continuation)
    prompt = ctx + cont
    toks = [(o, t) for o, t in word_tokens(prompt) if o + len(t) > len(ctx)]
    prefixes = [prompt[: o + len(t)] for o, t in toks]
    return sum(token_logprob(model, p) for p in prefixes), not any(beaten(model, p) for p in prefixes)


def test_faults_answer_every_request_once_with_the_clean_answers(shared_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(shared_data), "--adapter", "served-lora", "--with-base"]
    with JudgeServer(models=MODELS) as clean:
        code, _, err = run_main(monkeypatch, capsys, *run_cmd(clean.url, tmp_path / "clean", *data))
        assert code == 0, err
    with JudgeServer(models=MODELS, slow_delay=0.8, retry_after=0.02, **FAULTS) as srv:
        code, _, err = run_main(monkeypatch, capsys, *run_cmd(srv.url, tmp_path / "faulty", *data))
        assert code == 0, err
        answered, faults = dict(srv.answered), dict(srv.faults)
    assert set(faults) == {"429", "500", "slow", "reset", "truncated"}, faults  # every kind of fault happened
    assert all(n == 1 for n in answered.values()), "a request was answered twice"
    completions = [k for k in answered if "prompt" in srv.bodies[k]]
    n_requests = stored(tmp_path / "faulty")
    assert n_requests == stored(tmp_path / "clean") > 2 * N
    assert len(completions) == n_requests + 1  # each stored answer asked for once, plus the capability probe
    for variant in ("r__base", "r__served-lora"):
        for task in ("gsm8k", "arc_easy"):
            assert samples(tmp_path / "faulty" / variant, task) == samples(tmp_path / "clean" / variant, task)
        model = "tiny" if variant == "r__base" else "served-lora"
        for s in samples(tmp_path / "faulty" / variant, "gsm8k"):  # the table's text, cut at the first stop
            assert s["output"] == completion_text(model, s["prompt"]).split("\n\nQuestion:")[0]
        for s in samples(tmp_path / "faulty" / variant, "arc_easy"):
            want = [expected_loglikelihood(model, s["prompt"], c) for c in s["continuations"]]
            assert s["loglikelihoods"] == pytest.approx([w[0] for w in want], abs=1e-9)
            assert s["is_greedy"] == [w[1] for w in want]


def test_attempts_exhausted_exit_3_keep_the_answers_and_resume(gsm8k_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Requests that fail for good do not stop the others: every other answer is stored as it arrives, the error
    counts all the failures, and --resume asks only for those."""
    out = tmp_path / "out"
    rows = [json.loads(x) for x in (gsm8k_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:30]]
    by_length = sorted(rows, key=lambda r: len(r["question"]))
    dead = (by_length[0]["question"], by_length[-1]["question"])  # the first request sent and the last
    with JudgeServer(dead_prompts=tuple(json.dumps(q)[1:-1] for q in dead)) as srv:  # their bodies always get 500
        cmd = run_cmd(srv.url, out, "--data-dir", str(gsm8k_data), tasks="gsm8k", attempts=2, limit=30)
        code, _, err = run_main(monkeypatch, capsys, *cmd)
        assert code == 3 and err.count("\n") == 1, err
        line = err.strip()
        assert "2 of 30 requests failed at" in line and "HTTP 500 after 2 attempts (2x)" in line, line
        assert "the 28 answers of this run are in the store" in line, line
        assert stored(out) == 28  # every answer that arrived, before and after the failures
        assert not (out / "r").exists()  # no half-written run directory
        srv.dead_prompts = ()
        srv.reset_counts()
        code, _, err = run_main(monkeypatch, capsys, *cmd, "--resume")
        assert code == 0, err
        assert "28 answers from the store, 2 to compute" in err
        asked = [b for b in srv.bodies.values() if b.get("max_tokens") != 0]  # leave out the capability probe
        assert len(asked) == 2 and stored(out) == 30
        assert {b["prompt"].rsplit("Question: ", 1)[-1].split("\nAnswer:")[0] for b in asked} == set(dead)


def test_key_never_written_nor_printed(shared_data: Path, tmp_path: Path) -> None:
    """The key comes from api_key_env only; a server that echoes it in every reply and in its 401 cannot make it
    reach results, samples, the store or any byte of stdout and stderr."""
    key = "sk-harness-" + "Vb8" * 12
    env = {**os.environ, "HARNESS_TEST_KEY": key, "OPENAI_API_KEY": key, "HF_HUB_OFFLINE": "1"}

    def harness(url: str, out: Path) -> subprocess.CompletedProcess[str]:
        args = run_cmd(url, out, "--data-dir", str(shared_data), "--backend-option", "api_key_env=HARNESS_TEST_KEY",
                       limit=3)
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True,
                              cwd=ROOT, timeout=300)

    with JudgeServer(models=MODELS, api_key=key, echo_auth=True, p500=0.2) as srv:
        ok = harness(srv.url, tmp_path / "ok")
        assert ok.returncode == 0, ok.stderr
        assert f"Bearer {key}" in srv.auth_seen
    outputs = [s["output"] for s in samples(tmp_path / "ok" / "r", "gsm8k")]
    assert all("Authorization: Bearer ***" in o for o in outputs)  # the echo was cut, the text kept
    with JudgeServer(models=MODELS, api_key="the-right-key-123", echo_auth=True) as srv:
        bad = harness(srv.url, tmp_path / "bad")
        assert f"Bearer {key}" in srv.auth_seen
    assert bad.returncode == 3, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTTP 401" in lines[0] and "Incorrect API key provided: Bearer ***" in lines[0]
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(files) >= 4
    for f in files:
        assert key.encode() not in f.read_bytes(), f
    for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert key not in text and key[11:23] not in text


def open_session(url: str, **options: str) -> object:
    cls = get_backend("openai")
    spec = ModelSpec(model="tiny", backend="openai",
                     backend_options=cls.parse_options({"base_url": url, "backoff": "0.005", **options}))
    return cls().open(spec)


def test_loglikelihood_split_and_alignment() -> None:
    """Trailing context spaces move to the continuation (lm-eval's split), so both spellings score the same tokens."""
    with JudgeServer() as srv:
        s = open_session(srv.url)
        try:
            reqs = [LogLikelihood("Question: why?\nAnswer:", " because it is"), LogLikelihood("Question: why?\nAnswer: ",
                                                                                              "because it is")]
            got = s.answer("loglikelihood", [("base", r) for r in reqs])  # type: ignore[attr-defined]
            assert s.status().endswith("req/s · 0 retries · 0 failed")  # type: ignore[attr-defined]
        finally:
            s.close()  # type: ignore[attr-defined]
    want = expected_loglikelihood("tiny", "Question: why?\nAnswer:", " because it is")
    assert got[0] == got[1] == pytest.approx(want)
    assert server_stops(STOP) == ["Question:", "</s>", "<|im_end|>", "<|eot_id|>"]


def test_what_the_endpoint_cannot_do_is_an_error_before_the_run(shared_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with JudgeServer(completions=False) as srv:  # a hosted chat API: no /v1/completions at all
        s = open_session(srv.url)
        try:
            with pytest.raises(HarnessError, match=r"task arc_easy needs loglikelihood requests.*cannot return prompt "
                                                   r"log-probs for tiny \(HTTP 404: This is a chat model"):
                s.check("arc_easy", [LogLikelihood("Q:", " a")])  # type: ignore[attr-defined]
            with pytest.raises(HarnessError, match="task gsm8k sends plain prompts.*endpoint=chat"):
                s.check("gsm8k", [Generate("Question: 1+1?\nAnswer:")])  # type: ignore[attr-defined]
            with pytest.raises(HarnessError, match="--num-beams: the openai backend cannot"):
                s.check("e2e", [Generate((("user", "hi"),), num_beams=4)])  # type: ignore[attr-defined]
            s.check("mt-bench", [Generate((("user", "hi"),))])  # type: ignore[attr-defined]  # chat is fine
        finally:
            s.close()  # type: ignore[attr-defined]
        code, _, err = run_main(monkeypatch, capsys, *run_cmd(srv.url, tmp_path / "o", "--data-dir", str(shared_data),
                                                              tasks="arc_easy"))
        assert code == 2 and err.count("\n") == 1 and "loglikelihood" in err, err
        assert not (tmp_path / "o" / "r").exists()
        code, _, err = run_main(monkeypatch, capsys, *run_cmd(srv.url, tmp_path / "o", "--data-dir", str(shared_data),
                                                              "--backend-option", "endpoint=chat", tasks="gsm8k"))
        assert code == 0, err  # plain prompts sent as one user message each
        assert samples(tmp_path / "o" / "r", "gsm8k")[0]["output"] == "I cannot tell what to grade."
    with JudgeServer(models=MODELS) as srv:
        code, _, err = run_main(monkeypatch, capsys, "run", "--backend", "openai", "--backend-option",
                                f"base_url={srv.url}", "--model", "nope", "--tasks", "gsm8k", "--data-dir", str(shared_data),
                                "-o", str(tmp_path / "n"))
        assert code == 2 and "--model nope: not served at" in err and "served-lora, tiny" in err, err


def test_kill_9_mid_run_then_resume_asks_only_for_the_rest(gsm8k_data: Path, tmp_path: Path) -> None:
    """A run killed part-way keeps every batch it stored; --resume asks the endpoint only for what the store lacks
    and ends with the answers of an uninterrupted run."""
    import signal
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with JudgeServer(latency=0.05) as srv:
        def cmd(out: Path, *extra: str) -> list[str]:
            return [sys.executable, "-m", "harness.cli", *run_cmd(srv.url, out, "--data-dir", str(gsm8k_data),
                                                                 "--backend-option", "concurrency=2", *extra,
                                                                 tasks="gsm8k", limit=40)]
        killed = tmp_path / "killed"
        proc = subprocess.Popen(cmd(killed), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if (killed / ".store.sqlite").exists() and stored(killed) >= 8:
                    break
            except sqlite3.OperationalError:  # the file is there, its table not yet
                pass
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept = stored(killed)
        assert 8 <= kept < 40, "the run must be killed part-way"
        srv.reset_counts()
        p = subprocess.run(cmd(killed, "--resume"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert f"{kept} answers from the store, {40 - kept} to compute" in p.stderr
        asked = [b for b in srv.bodies.values() if b.get("max_tokens") != 0]  # leave out the capability probe
        assert len(asked) == 40 - kept
        p = subprocess.run(cmd(tmp_path / "clean"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    assert samples(killed / "r", "gsm8k") == samples(tmp_path / "clean" / "r", "gsm8k")
