"""The judge client and grading pipeline against a real OpenAI-compatible server on 127.0.0.1 (tests/judge_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_main
from judge_server import JudgeServer

from harness.errors import HarnessError
from judges.client import JudgeClient, JudgeSettings, RemoteFailure, ResponseCache, cache_key, redact
from judges.formats import load_judgments
from judges.grading import pairwise_jobs, read_finished, run_jobs, single_jobs
from judges.questions import Question

ROOT = Path(__file__).resolve().parent.parent
QS = [Question(str(i), (f"Question number {i}?",)) for i in range(12)]
# Word counts decide the test judge: "long" always has more words than "short"; "mid" ties "long" on even ids.
ANSWERS = {
    "long": {str(i): [" ".join(["word"] * (6 + i % 2))] for i in range(12)},
    "short": {str(i): [" ".join(["word"] * 3)] for i in range(12)},
    "mid": {str(i): [" ".join(["word"] * 6)] for i in range(12)},
}

DISTINCT = {m: {q: [f"{t[0]} {m} {q}"] for q, t in rows.items()} for m, rows in ANSWERS.items()}  # no two prompts alike


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


def test_client_error_is_a_permanent_remote_failure() -> None:
    with JudgeServer(api_key="right") as srv:
        s = fast_settings(srv.url)
        jobs, _ = single_jobs(QS[:1], {"long": ANSWERS["long"]}, s)
        with pytest.raises(RemoteFailure, match="HTTP 401 .invalid api key") as e:
            run_jobs(jobs, s, None, quiet=True, api_key="wrong")
        assert srv.requests == 1  # a 401 is not retried
    assert e.value.exit_code == 3 and isinstance(e.value, HarnessError)


def test_redact_keys_and_bearer_values() -> None:
    key = "sk-proj-" + "Xy9" * 10
    assert redact(f"Incorrect API key provided: {key}. See docs.", (key,)) == "Incorrect API key provided: ***. See docs."
    assert redact(f"sent authorization: Bearer {key[:-3]}zzz") == "sent authorization: ***"  # any bearer value, not only ours
    assert redact('{"Authorization": "Bearer abc-123456789"}') == '{"Authorization": "***"}'
    assert redact("the Bearer of bad news, unauthorised") == "the Bearer of bad news, unauthorised"  # prose stays
    assert redact("key short", ("short",)) == "key short"  # placeholders under 8 characters are not secrets


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


def write_inputs(tmp_path: Path, answers: dict[str, dict[str, list[str]]] = ANSWERS,
                 questions: list[Question] = QS) -> tuple[Path, Path]:
    """(answers directory with one FastChat file per model, questions file)."""
    ans = tmp_path / "answers"
    ans.mkdir()
    for m, rows in answers.items():
        (ans / f"{m}.jsonl").write_text("".join(
            json.dumps({"question_id": int(q), "model_id": m, "choices": [{"index": 0, "turns": t}]}) + "\n"
            for q, t in rows.items()))
    qfile = tmp_path / "questions.jsonl"
    qfile.write_text("".join(json.dumps({"question_id": int(q.question_id), "turns": list(q.turns)}) + "\n"
                             for q in questions))
    return ans, qfile


HARNESS = [sys.executable, "-m", "harness.cli"]


def judge_cmd(kind: str, ans: Path, qfile: Path, url: str, out: Path, *extra: str) -> list[str]:
    return HARNESS + ["judge", kind, "--answers", *map(str, sorted(ans.glob("*.jsonl"))), "--questions", str(qfile),
                      "--judge", "test-judge", "--judge-base-url", url, "--backoff", "0.005", "-o", str(out), "--quiet",
                      *extra]


def assert_key_nowhere(key: str, texts: list[str], *dirs: Path) -> int:
    """The key in no output text and no byte of any file under `dirs`; returns how many files were checked."""
    for t in texts:
        assert key not in t
    files = [f for d in dirs for f in d.rglob("*") if f.is_file()]
    for f in files:
        assert key.encode() not in f.read_bytes(), f
    return len(files)


def test_cli_judge_and_tournament_never_write_the_key(tmp_path: Path) -> None:
    key = "sk-test-" + "Zq7" * 12
    ans, qfile = write_inputs(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    with JudgeServer(api_key=key, p500=0.2, echo_auth=True) as srv:  # every reply quotes the key back
        cmd = judge_cmd("pairwise", ans, qfile, srv.url, out / "judgments.jsonl", "--cache", str(out / "cache.sqlite"))
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"Bearer {key}" in srv.auth_seen
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 36 and all(r["winner"] for r in rows)
    assert all("Authorization: ***" in raw for r in rows for raw in r["raw"])  # the echo was cut, the verdict kept
    t = subprocess.run(HARNESS + ["tournament", str(out / "judgments.jsonl"), "-o", str(out / "ratings.md"),
                                  "--elo-rounds", "200", "--bt-rounds", "50"], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert t.returncode == 0, t.stderr
    md = (out / "ratings.md").read_text()
    assert "Elo (K=4" in md and "Bradley–Terry" in md and "Win rate" in md
    assert (out / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md.index("| 1 | long") < md.index("short")
    assert assert_key_nowhere(key, [p.stdout, p.stderr, t.stdout, t.stderr], out) >= 5


def test_401_that_echoes_the_key_is_redacted_everywhere(tmp_path: Path) -> None:
    """Real endpoints quote a rejected key in the 401 body; it must reach no output and no file."""
    key = "sk-live-" + "Qw3rTy" * 8
    ans, qfile = write_inputs(tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "OPENAI_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    with JudgeServer(api_key="the-right-key-123", echo_auth=True) as srv:
        cmd = judge_cmd("single", ans, qfile, srv.url, out / "judgments.jsonl", "--cache", str(cache / "c.sqlite"))
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert f"Bearer {key}" in srv.auth_seen  # the server did get (and echo) the key
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: judge endpoint") and "HTTP 401" in lines[0]
    assert "Incorrect API key provided: Bearer ***" in lines[0] and "Traceback" not in p.stderr
    assert_key_nowhere(key, [p.stdout, p.stderr], out, cache, tmp_path)
    assert key[8:20] not in p.stderr  # not even a piece of it


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


def test_judge_exits_3_when_judgments_fail_and_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ans, qfile = write_inputs(tmp_path, {m: ANSWERS[m] for m in ("long", "short")})
    out = tmp_path / "out" / "j.jsonl"
    base = ["judge", "single", "--answers", str(ans), "--questions", str(qfile), "--judge", "test-judge", "--no-cache",
            "--backoff", "0.001", "--max-attempts", "2", "-o", str(out), "-q"]
    code, _, err = run_main(monkeypatch, capsys, *base, "--judge-base-url", closed_port_url())
    assert code == 3 and err.count("\n") == 1, err
    assert "24 of 24 judgments failed" in err and "connection error" in err and "nothing written" in err
    assert not (tmp_path / "out").exists()
    with JudgeServer(pdead=0.25) as srv:  # a quarter of the calls always get 500: they fail, the rest are kept
        code, _, err = run_main(monkeypatch, capsys, *base, "--judge-base-url", srv.url)
        dead = 24 - len(out.read_text().splitlines())
        assert code == 3 and 0 < dead < 24 and f"{dead} of 24 judgments failed" in err and "HTTP 500" in err, err
        assert all(r["score"] is not None for r in map(json.loads, out.read_text().splitlines()))
        srv.reset_counts()
        code, _, err = run_main(monkeypatch, capsys, *base, "--judge-base-url", srv.url, "--resume")
        assert code == 3 and f"{24 - dead} judgments from {out}, {dead} to judge" in err
        assert srv.requests == dead * 2  # only the failed ones were tried again (two attempts each)
        assert json.loads(out.with_suffix(".usage.json").read_text())["failed"] == dead


def test_resume_sends_nothing_for_finished_judgments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ans, qfile = write_inputs(tmp_path, DISTINCT)
    clean, part = tmp_path / "clean.jsonl", tmp_path / "part.jsonl"
    with JudgeServer() as srv:
        base = ["judge", "pairwise", "--answers", str(ans), "--questions", str(qfile), "--judge", "test-judge",
                "--judge-base-url", srv.url, "--no-cache", "-q"]
        assert run_main(monkeypatch, capsys, *base, "-o", str(clean))[0] == 0
        lines = clean.read_text().splitlines(keepends=True)
        assert len(lines) == 36 and srv.requests == 72
        # what a kill leaves: some finished judgments, out of order, the last one cut mid-line
        part.write_text("".join(lines[20:30] + lines[3:9]) + lines[9][:40])
        code, _, err = run_main(monkeypatch, capsys, *base, "-o", str(part))
        assert code == 2 and "already exists; pass --resume" in err
        srv.reset_counts()
        code, _, err = run_main(monkeypatch, capsys, *base, "-o", str(part), "--resume")
        assert code == 0, err
        assert "16 judgments from" in err and "20 to judge" in err
        assert srv.requests == 20 * 2  # two orders per pairwise judgment, none for the 16 it had
        assert part.read_text() == clean.read_text()  # the same records, in the same order
        srv.reset_counts()
        assert run_main(monkeypatch, capsys, *base, "-o", str(part), "--resume")[0] == 0 and srv.requests == 0
        other = base[:base.index("--no-cache")] + ["--max-tokens", "99", "--no-cache", "-q", "-o", str(part), "--resume"]
        code, _, err = run_main(monkeypatch, capsys, *other)
        assert code == 2 and f"{part}:1: judgment" in err and "not part of this run" in err
        assert srv.requests == 0


def test_kill_9_mid_judging_then_resume(tmp_path: Path) -> None:
    """`harness judge` killed part-way keeps every judgment it finished; --resume judges only the rest."""
    ans, qfile = write_inputs(tmp_path, DISTINCT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with JudgeServer(latency=0.1) as srv:
        killed, clean = tmp_path / "killed.jsonl", tmp_path / "clean.jsonl"
        cmd = judge_cmd("single", ans, qfile, srv.url, killed, "--no-cache", "--max-concurrency", "2")
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and (
                not killed.exists() or killed.read_text().count("\n") < 6):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows, _ = read_finished(killed, single_jobs(QS, DISTINCT, fast_settings(srv.url, timeout=120.0,
                                                                                 backoff_base=0.005))[0])
        assert 6 <= len(rows) < 36, "the judge must be killed part-way"
        assert not killed.with_suffix(".usage.json").exists()
        srv.reset_counts()
        p = subprocess.run(cmd + ["--resume"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"{len(rows)} judgments from {killed}, {36 - len(rows)} to judge" in p.stderr
        assert srv.requests == 36 - len(rows)  # nothing finished was asked again
        p = subprocess.run(judge_cmd("single", ans, qfile, srv.url, clean, "--no-cache"), env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    assert killed.read_text() == clean.read_text()
