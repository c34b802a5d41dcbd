"""The judge client and grading pipeline against a real OpenAI-compatible server on 127.0.0.1 (tests/judge_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from judge_server import JudgeServer

from harness.errors import HarnessError
from judges.client import JudgeClient, JudgeSettings, ResponseCache, cache_key
from judges.formats import load_judgments
from judges.grading import pairwise_jobs, run_jobs, single_jobs
from judges.questions import Question

ROOT = Path(__file__).resolve().parent.parent
QS = [Question(str(i), (f"Question number {i}?",)) for i in range(12)]
# Word counts decide the test judge: "long" always has more words than "short"; "mid" ties "long" on even ids.
ANSWERS = {
    "long": {str(i): [" ".join(["word"] * (6 + i % 2))] for i in range(12)},
    "short": {str(i): [" ".join(["word"] * 3)] for i in range(12)},
    "mid": {str(i): [" ".join(["word"] * 6)] for i in range(12)},
}


def expected_winner(a: str, b: str, qid: str) -> str:
    wa, wb = len(ANSWERS[a][qid][0].split()), len(ANSWERS[b][qid][0].split())
    return "model_a" if wa > wb else ("model_b" if wb > wa else "tie")


def fast_settings(url: str, **kw: object) -> JudgeSettings:
    base = {"model": "test-judge", "base_url": url, "timeout": 0.15, "backoff_base": 0.005, "backoff_max": 0.02,
            "max_attempts": 4, "max_concurrency": 8}
    base.update(kw)
    return JudgeSettings(**base)  # type: ignore[arg-type]


def test_faults_every_judgment_recorded_once_and_retries_bounded(tmp_path: Path) -> None:
    with JudgeServer(p429=0.2, p500=0.2, pslow=0.1, pmalformed=0.1, pdead=0.05, slow_delay=0.3, retry_after=0.01) as srv:
        s = fast_settings(srv.url)
        jobs, _ = pairwise_jobs(QS, ANSWERS, s)
        run = run_jobs(jobs, s, ResponseCache(tmp_path / "cache.sqlite"), quiet=True)
        n_server = srv.requests
        per_body = list(srv.attempts.values())
    assert run.planned == 3 * 12 and run.stopped is None
    keys = [(r["question_id"], r["model_a"], r["model_b"], r["turn"]) for r in run.records]
    assert len(keys) == len(set(keys)) == run.planned  # every judgment exactly once
    assert max(per_body) <= s.max_attempts  # retries bounded per call
    assert n_server == run.usage.requests and run.usage.retries > 0
    assert run.usage.by_status.get("429", 0) > 0 and run.usage.by_status.get("timeout", 0) > 0
    errors = Counter(e.split(":")[0] for r in run.records for e in r["errors"] if e)
    assert errors["parse"] > 0 and errors["api"] > 0  # malformed and dead calls recorded, not dropped or guessed
    for r in run.records:
        if r["error"]:
            assert r["winner"] is None and None in r["votes"]
        else:
            assert r["winner"] == expected_winner(r["model_a"], r["model_b"], r["question_id"])


def test_retry_after_is_honoured() -> None:
    with JudgeServer(p429=1.0, retry_after=0.3) as srv:
        s = fast_settings(srv.url, timeout=5.0)

        async def go() -> tuple[float, object]:
            async with JudgeClient(s) as c:
                t = time.perf_counter()
                out = await c.complete((("user", "=== Conversation ===\n[User]\nq\n[Assistant]\na b c\n"
                                                 "=== end of Conversation ==="),))
                return time.perf_counter() - t, out

        elapsed, out = asyncio.run(go())
    assert out.text is not None and out.text.endswith("[[3]]") and out.attempts == 2  # type: ignore[attr-defined]
    assert elapsed >= 0.3  # waited Retry-After, not the 5 ms backoff


def test_cache_second_run_sends_no_request(tmp_path: Path) -> None:
    with JudgeServer(pmalformed=0.2) as srv:
        s = fast_settings(srv.url)
        jobs, _ = single_jobs(QS, ANSWERS, s)
        first = run_jobs(jobs, s, ResponseCache(tmp_path / "c.sqlite"), quiet=True)
        assert srv.requests == len({cache_key(s, j.prompts[0]) for j in jobs}) < len(jobs)
        srv.reset_counts()
        second = run_jobs(jobs, s, ResponseCache(tmp_path / "c.sqlite"), quiet=True)
        assert srv.requests == 0
        # another judge model or endpoint settings is a different cache entry
        other = fast_settings(srv.url, max_tokens=77)
        other_jobs = single_jobs(QS[:2], ANSWERS, other)[0]
        run_jobs(other_jobs, other, ResponseCache(tmp_path / "c.sqlite"), quiet=True)
        assert srv.requests == len({cache_key(other, j.prompts[0]) for j in other_jobs}) > 0
    assert second.usage.cache_hits == len(jobs) and second.usage.cost == 0
    strip = [{k: v for k, v in r.items() if k != "cached"} for r in first.records]
    assert strip == [{k: v for k, v in r.items() if k != "cached"} for r in second.records]
    assert any(r["error"] and r["error"].startswith("parse") for r in second.records)


def test_max_cost_stops_cleanly_and_rerun_continues(tmp_path: Path) -> None:
    with JudgeServer() as srv:
        s = fast_settings(srv.url, price_in=1000.0, price_out=1000.0, max_tokens=20, max_cost=0.6, max_concurrency=2)
        jobs, _ = single_jobs(QS, ANSWERS, s)
        cache = tmp_path / "c.sqlite"
        run = run_jobs(jobs, s, ResponseCache(cache), quiet=True)
        assert run.stopped and 0 < len(run.records) < len(jobs)
        assert run.usage.cost <= 0.6
        assert all(r["score"] is not None for r in run.records)
        sent = srv.requests
        srv.reset_counts()
        s2 = fast_settings(srv.url, price_in=1000.0, price_out=1000.0, max_tokens=20, max_cost=100.0)
        run2 = run_jobs(jobs, s2, ResponseCache(cache), quiet=True)
        assert run2.stopped is None and len(run2.records) == len(jobs)
        distinct = {cache_key(s, j.prompts[0]) for j in jobs}  # identical prompts are sent once
        assert srv.requests == len(distinct) - sent  # finished calls came from the cache
    with pytest.raises(HarnessError, match="--price-in"):
        JudgeSettings("unknown-judge", max_cost=1.0).prices()


def test_client_error_is_one_line_user_error() -> None:
    with JudgeServer(api_key="right") as srv:
        s = fast_settings(srv.url)
        jobs, _ = single_jobs(QS[:1], {"long": ANSWERS["long"]}, s)
        with pytest.raises(HarnessError, match="HTTP 401 .invalid api key"):
            run_jobs(jobs, s, None, quiet=True, api_key="wrong")
        assert srv.requests == 1  # a 401 is not retried


def test_position_bias_disagreement_policies(tmp_path: Path) -> None:
    qs = QS[:4]
    answers = {"x": {q.question_id: ["a b c d"] for q in qs}, "y": {q.question_id: ["a b c d e"] for q in qs}}
    with JudgeServer(position_bias=True) as srv:
        s = fast_settings(srv.url)
        tie = run_jobs(pairwise_jobs(qs, answers, s, policy="tie")[0], s, None, quiet=True)
        sep = run_jobs(pairwise_jobs(qs, answers, s, policy="separate")[0], s, None, quiet=True)
    assert all(r["votes"] == ["model_a", "model_b"] for r in tie.records)  # the judge always said "A"
    assert all(r["winner"] == "tie" and r["note"] == "disagreement" for r in tie.records)
    for run, n, outcomes in ((tie, 4, {0.5}), (sep, 8, {0.0, 1.0})):
        path = tmp_path / f"{run.records[0]['policy']}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in run.records))
        matches = load_judgments([path]).matches
        assert len(matches) == n and {m.outcome for m in matches} == outcomes


def test_cli_judge_and_tournament_never_write_the_key(tmp_path: Path) -> None:
    key = "sk-test-" + "Zq7" * 12
    ans = tmp_path / "answers"
    ans.mkdir()
    for m, rows in ANSWERS.items():
        (ans / f"{m}.jsonl").write_text("".join(
            json.dumps({"question_id": int(q), "model_id": m, "choices": [{"index": 0, "turns": t}]}) + "\n"
            for q, t in rows.items()))
    qfile = tmp_path / "questions.jsonl"
    qfile.write_text("".join(json.dumps({"question_id": int(q.question_id), "turns": list(q.turns)}) + "\n" for q in QS))
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    harness = [sys.executable, "-m", "harness.cli"]
    with JudgeServer(api_key=key, p500=0.2) as srv:
        cmd = harness + ["judge", "pairwise", "--answers", *map(str, sorted(ans.glob("*.jsonl"))), "--questions",
                         str(qfile), "--judge", "test-judge", "--judge-base-url", srv.url, "--backoff", "0.005",
                         "--cache", str(out / "cache.sqlite"), "-o", str(out / "judgments.jsonl"), "--quiet"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"Bearer {key}" in srv.auth_seen
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 36 and all(r["winner"] for r in rows)
    p = subprocess.run(harness + ["tournament", str(out / "judgments.jsonl"), "-o", str(out / "ratings.md"),
                                  "--elo-rounds", "200", "--bt-rounds", "50"], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    md = (out / "ratings.md").read_text()
    assert "Elo (K=4" in md and "Bradley–Terry" in md and "Win rate" in md
    assert (out / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md.index("| 1 | long") < md.index("short")
    written = [f for f in out.rglob("*") if f.is_file()]
    assert len(written) >= 5
    for f in written:
        assert key.encode() not in f.read_bytes(), f
