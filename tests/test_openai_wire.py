"""--backend openai on the wire, against the loopback test server (tests/judge_server.py): what each request carries
(n, seed, top_p, temperature), the max_tokens=1 fallback for servers that refuse an echo with max_tokens=0, the
concurrency bound, option errors, and the progress bars' request counts for `run` and `judge`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_main
from judge_server import JudgeServer, completion_text

ROOT = Path(__file__).resolve().parent.parent
MODELS: dict[str, str | None] = {"tiny": None}


def cmd(url: str, out: Path, data: Path, *extra: str, tasks: str = "gsm8k", limit: int = 4) -> list[str]:
    return ["run", "--backend", "openai", "--backend-option", f"base_url={url}", "--backend-option", "backoff=0.005",
            "--model", "tiny", "--tasks", tasks, "--limit", str(limit), "--data-dir", str(data), "-o", str(out),
            "--run-name", "r", "-q", *extra]


def samples(run_dir: Path, task: str) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines()]


def test_sampling_settings_reach_the_server(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--samples, --temperature, --top-p and --seed go out as n, temperature, top_p and seed; the n choices come back
    in index order, each the server's text for that index and seed."""
    with JudgeServer(models=MODELS) as srv:
        code, _, err = run_main(monkeypatch, capsys, *cmd(srv.url, tmp_path / "o", shared_data, "--samples", "3",
                                                          "--temperature", "0.7", "--top-p", "0.9", "--seed", "5"))
        assert code == 0, err
        sent = [b for b in srv.bodies.values() if not b.get("echo")]
    assert len(sent) == 4
    for b in sent:
        assert b["n"] == 3 and b["temperature"] == 0.7 and b["top_p"] == 0.9 and isinstance(b["seed"], int)
    by_prompt = {b["prompt"]: b for b in sent}
    for s in samples(tmp_path / "o" / "r", "gsm8k"):
        b = by_prompt[s["prompt"]]
        want = [completion_text("tiny", s["prompt"], i, b["seed"]).split("\n\nQuestion:")[0] for i in range(3)]
        assert s["output"] == want and len(set(want)) > 1


def test_echo_with_max_tokens_0_refused_falls_back_to_1(shared_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A server that wants at least one new token with an echo gets max_tokens=1; the generated token (past the
    prompt's end) is left out, so the scores equal a max_tokens=0 server's."""
    got = {}
    for name, refuses in (("zero", False), ("one", True)):
        with JudgeServer(models=MODELS, echo_needs_a_token=refuses) as srv:
            code, _, err = run_main(monkeypatch, capsys, *cmd(srv.url, tmp_path / name, shared_data, tasks="arc_easy"))
            assert code == 0, err
            scored = [b for b in srv.bodies.values() if b.get("echo") and b["prompt"] != "Hello world, this is a probe."]
        assert {b["max_tokens"] for b in scored} == ({1} if refuses else {0})
        got[name] = [(s["loglikelihoods"], s["is_greedy"]) for s in samples(tmp_path / name / "r", "arc_easy")]
    assert got["one"] == got["zero"] and len(got["one"]) == 4


def test_concurrency_bounds_requests_in_flight(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with JudgeServer(models=MODELS, latency=0.05) as srv:
        code, _, err = run_main(monkeypatch, capsys, *cmd(srv.url, tmp_path / "o", shared_data, "--backend-option",
                                                          "concurrency=3", limit=12))
        assert code == 0, err
        assert srv.max_inflight == 3


@pytest.mark.parametrize("option, says", [
    ("base_url=foo", "base_url=foo: expected an http:// or https:// URL"),
    ("concurrency=0", "concurrency=0: must be > 0"),
    ("max_attempts=0", "max_attempts=0: must be > 0"),
    ("timeout=0", "timeout=0.0: must be > 0"),
    ("timeout=abc", "timeout"),
    ("backoff=-1", "backoff=-1.0: must be >= 0"),
    ("endpoint=bogus", "endpoint=bogus: use completions or chat"),
    ("nope=1", "nope"),
])
def test_bad_options_are_one_line_errors(option: str, says: str, shared_data: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    code, _, err = run_main(monkeypatch, capsys, *cmd("http://127.0.0.1:9/v1", out, shared_data, "--backend-option",
                                                      option))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and says in err, err
    assert not out.exists()


def test_progress_bars_show_requests_retries_and_failures(shared_data: Path, tmp_path: Path) -> None:
    """On a terminal, `run` and `judge` show the transport's requests/s, retries and failures beside the bar."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    with JudgeServer(models=MODELS, p500=0.3, retry_after=0.01) as srv:
        run = [a for a in cmd(srv.url, tmp_path / "o", shared_data, limit=6) if a != "-q"]
        p = subprocess.run([sys.executable, "-m", "harness.cli", *run], env=env, capture_output=True, text=True,
                           cwd=ROOT, timeout=300)
        assert p.returncode == 0, p.stderr
        assert "req/s ·" in p.stderr and " retries · 0 failed" in p.stderr, p.stderr[-500:]
        answers = tmp_path / "answers"
        answers.mkdir()
        qfile = tmp_path / "q.jsonl"
        qfile.write_text("".join(json.dumps({"question_id": i, "category": "writing", "turns": [f"Write {i} words."]})
                                 + "\n" for i in range(3)))
        for m in ("a", "b"):
            (answers / f"{m}.jsonl").write_text("".join(json.dumps({"question_id": i, "model_id": m, "choices": [
                {"turns": [" ".join(["word"] * (i + 2 if m == "a" else 1))]}]}) + "\n" for i in range(3)))
        judge = ["judge", "pairwise", "--answers", str(answers / "a.jsonl"), str(answers / "b.jsonl"), "--questions",
                 str(qfile), "--judge", "test-judge", "--judge-base-url", srv.url, "--backoff", "0.005", "--no-cache",
                 "-o", str(tmp_path / "j.jsonl")]
        p = subprocess.run([sys.executable, "-m", "harness.cli", *judge], env=env, capture_output=True, text=True,
                           cwd=ROOT, timeout=300)
        assert p.returncode == 0, p.stderr
        assert "judging" in p.stderr and "req/s ·" in p.stderr and " retries · " in p.stderr, p.stderr[-500:]
