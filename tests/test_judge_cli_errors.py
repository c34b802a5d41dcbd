"""Bad inputs to generate, judge single|multi|pairwise and tournament: exit 2 (3 when the judge endpoint fails for
good), one error line naming the file, row or flag, no traceback, and nothing new or half-written on disk."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_main
from judge_server import JudgeServer

KEY = "sk-wrong-" + "Kx5" * 8


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # {ws} = the workspace, {model} = the tiny model, {url} = a live judge, {dead} = a closed port
    code: int
    says: str  # in the error line


ANS = ("--answers", "{ws}/answers/a.jsonl", "--answers", "{ws}/answers/b.jsonl")
Q = ("--questions", "{ws}/q.jsonl")
JUDGE = ("--judge", "test-judge", "--judge-base-url", "{url}", "-o", "{ws}/out/j.jsonl", "-q")
GEN = ("generate", "-m", "{model}", "-o", "{ws}/out", "--max-new-tokens", "4", "-q")
TOUR = ("-o", "{ws}/out/ratings.md", "--elo-rounds", "20", "--bt-rounds", "5")

CASES = [
    # generate
    Case("generate-unknown-questions", (*GEN, "--questions", "nope"), 2, "--questions nope"),
    Case("generate-garbled-questions", (*GEN, "--questions", "{ws}/garbled.jsonl"), 2, "garbled.jsonl:2: not valid JSON"),
    Case("generate-question-without-text", (*GEN, "--questions", "{ws}/no_text.jsonl"), 2, "no_text.jsonl:1: no question"),
    Case("generate-limit-0", (*GEN, *Q, "--limit", "0"), 2, "--limit: must be > 0"),
    Case("generate-negative-max-new-tokens", (*GEN, *Q, "--max-new-tokens", "-3"), 2, "--max-new-tokens: must be > 0"),
    Case("generate-negative-temperature", (*GEN, *Q, "--temperature", "-0.5"), 2, "--temperature: must be >= 0"),
    Case("generate-missing-model", (*GEN[:2], "{ws}/no-such-model", *GEN[3:], *Q), 2, "no-such-model"),
    Case("generate-missing-adapter", (*GEN, *Q, "--adapter", "{ws}/no-such-adapter"), 2, "no-such-adapter"),
    Case("generate-answers-exist", (*GEN, *Q, "-o", "{ws}/answers_out"), 2, "already exists; pass --resume"),
    Case("generate-output-under-a-file", (*GEN, *Q, "-o", "{ws}/q.jsonl/answers"), 2, "{ws}/q.jsonl is not a directory"),
    Case("generate-resume-and-overwrite", (*GEN, *Q, "--resume", "--overwrite"), 2, "--resume and --overwrite"),
    # judge single
    Case("single-missing-answers", ("judge", "single", "--answers", "{ws}/nope.jsonl", *Q, *JUDGE), 2,
         "--answers {ws}/nope.jsonl: no such file"),
    Case("single-garbled-answers", ("judge", "single", "--answers", "{ws}/garbled.jsonl", *Q, *JUDGE), 2,
         "garbled.jsonl:2: not valid JSON"),
    Case("single-answer-without-id", ("judge", "single", "--answers", "{ws}/no_id.jsonl", *Q, *JUDGE), 2,
         "no_id.jsonl:1: missing column question_id"),
    Case("single-empty-answers-dir", ("judge", "single", "--answers", "{ws}/empty", *Q, *JUDGE), 2,
         "--answers {ws}/empty: no .jsonl"),
    Case("single-unknown-questions", ("judge", "single", *ANS, "--questions", "vicuna-2", *JUDGE), 2,
         "--questions vicuna-2"),
    Case("single-limit-0", ("judge", "single", *ANS, *Q, *JUDGE, "--limit", "0"), 2, "--limit: must be > 0"),
    Case("single-bad-turns", ("judge", "single", *ANS, *Q, *JUDGE, "--turns", "1,two"), 2, "--turns 1,two"),
    Case("single-max-attempts-0", ("judge", "single", *ANS, *Q, *JUDGE, "--max-attempts", "0"), 2, "--max-attempts"),
    Case("single-max-cost-without-prices", ("judge", "single", *ANS, *Q, *JUDGE, "--max-cost", "1"), 2, "--price-in"),
    Case("single-cache-not-sqlite", ("judge", "single", *ANS, *Q, *JUDGE, "--cache", "{ws}/q.jsonl"), 2,
         "--cache {ws}/q.jsonl: not a judge cache"),
    Case("single-cache-under-a-file", ("judge", "single", *ANS, *Q, *JUDGE, "--cache", "{ws}/q.jsonl/c.sqlite"), 2,
         "--cache {ws}/q.jsonl/c.sqlite: {ws}/q.jsonl is not a directory"),
    Case("single-output-is-a-dir", ("judge", "single", *ANS, *Q, *JUDGE, "-o", "{ws}/done"), 2, "-o {ws}/done: is a dir"),
    Case("single-output-exists", ("judge", "single", *ANS, *Q, *JUDGE[:-3], "-o", "{ws}/done/j.jsonl"), 2,
         "done/j.jsonl: already exists; pass --resume"),
    Case("single-resume-malformed-row", ("judge", "single", *ANS, *Q, *JUDGE[:-3], "-o", "{ws}/done/j.jsonl",
                                         "--resume"), 2, "done/j.jsonl:1: not valid JSON"),
    Case("single-unreachable-judge", ("judge", "single", *ANS, *Q, *JUDGE, "--judge-base-url", "{dead}",
                                      "--max-attempts", "2", "--backoff", "0.001"), 3,
         "4 of 4 judgments failed at the judge endpoint"),
    Case("single-bad-base-url", ("judge", "single", *ANS, *Q, *JUDGE, "--judge-base-url", "localhost:8000/v1"), 2,
         "--judge-base-url localhost:8000/v1: expected an http"),
    Case("single-key-refused", ("judge", "single", *ANS, *Q, *JUDGE, "--judge-base-url", "{locked}"), 3, "HTTP 401"),
    # judge multi and pairwise
    Case("multi-one-model", ("judge", "multi", "--answers", "{ws}/answers/a.jsonl", *Q, *JUDGE), 2, "at least two models"),
    Case("multi-limit-0", ("judge", "multi", *ANS, *Q, *JUDGE, "-l", "0"), 2, "--limit: must be > 0"),
    Case("pairwise-unknown-baseline", ("judge", "pairwise", *ANS, *Q, *JUDGE, "--baseline", "zz"), 2, "--baseline zz"),
    Case("pairwise-bad-policy", ("judge", "pairwise", *ANS, *Q, *JUDGE, "--disagreement", "coin"), 2, "--disagreement"),
    Case("pairwise-bad-reference-mode", ("judge", "pairwise", *ANS, *Q, *JUDGE, "--reference-mode", "x"), 2,
         "--reference-mode"),
    Case("pairwise-same-model-twice", ("judge", "pairwise", *ANS, "--answers", "{ws}/answers_out/a.jsonl", *Q, *JUDGE),
         2, "model 'a' already read"),
    # tournament
    Case("tournament-missing-file", ("tournament", "{ws}/nope.jsonl", *TOUR), 2, "nope.jsonl: file not found"),
    Case("tournament-garbled-row", ("tournament", "{ws}/judgments_cut.jsonl", *TOUR), 2, "judgments_cut.jsonl:2"),
    Case("tournament-missing-column", ("tournament", "{ws}/no_model.jsonl", *TOUR), 2,
         "no_model.jsonl:1: missing column model_a"),
    Case("tournament-bad-turn", ("tournament", "{ws}/bad_turn.jsonl", *TOUR, "--baseline", "a"), 2,
         "bad_turn.jsonl:1: turn must be a number"),
    Case("tournament-bad-winner", ("tournament", "{ws}/bad_winner.jsonl", *TOUR), 2, "bad_winner.jsonl:1: winner"),
    Case("tournament-bad-review-score", ("tournament", "{ws}/review_a_b.jsonl", *TOUR), 2,
         "review_a_b.jsonl:1: score must be a number"),
    Case("tournament-empty-file", ("tournament", "{ws}/empty.jsonl", *TOUR), 2, "empty.jsonl: no judgments"),
    Case("tournament-bad-rename", ("tournament", "{ws}/judgments.jsonl", *TOUR, "--rename", "a"), 2, "--rename 'a'"),
    Case("tournament-output-under-a-file", ("tournament", "{ws}/judgments.jsonl", *TOUR, "-o", "{ws}/q.jsonl/r.md"), 2,
         "-o {ws}/q.jsonl/r.md: {ws}/q.jsonl is not a directory"),
    Case("tournament-elo-rounds-0", ("tournament", "{ws}/judgments.jsonl", *TOUR[:2], "--elo-rounds", "0"), 2,
         "--elo-rounds"),
]


def _jsonl(path: Path, rows: list[object]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _workspace(ws: Path, model_name: str) -> None:
    """Inputs good and bad; out/ is where every command writes (it must stay empty)."""
    (ws / "answers").mkdir(parents=True)
    (ws / "answers_out").mkdir()
    (ws / "empty").mkdir()
    (ws / "out").mkdir()
    (ws / "done").mkdir()
    _jsonl(ws / "q.jsonl", [{"question_id": i, "turns": [f"Question {i}?"]} for i in (1, 2)])
    for m, n in (("a", 3), ("b", 5)):
        _jsonl(ws / "answers" / f"{m}.jsonl",
               [{"question_id": i, "model_id": m, "choices": [{"index": 0, "turns": [" ".join(["w"] * n)]}]} for i in (1, 2)])
    (ws / "answers_out" / "a.jsonl").write_text((ws / "answers" / "a.jsonl").read_text())
    (ws / "answers_out" / f"{model_name}.jsonl").write_text((ws / "answers" / "a.jsonl").read_text())
    (ws / "garbled.jsonl").write_text('{"question_id": 1, "turns": ["x"]}\n{"question_id": 2, "tur\n')
    _jsonl(ws / "no_text.jsonl", [{"question_id": 1, "turns": []}])
    _jsonl(ws / "no_id.jsonl", [{"model_id": "a", "text": "an answer"}])
    pair = {"kind": "pairwise", "question_id": 1, "turn": 1, "model_a": "a", "model_b": "b", "winner": "model_a"}
    _jsonl(ws / "judgments.jsonl", [pair])
    (ws / "judgments_cut.jsonl").write_text(json.dumps(pair) + '\n{"kind": "pairwise", "question_id": 2, "mod\n')
    _jsonl(ws / "no_model.jsonl", [{"kind": "pairwise", "question_id": 1, "winner": "model_a"}])
    _jsonl(ws / "bad_turn.jsonl", [{"kind": "single", "question_id": 1, "model": "a", "turn": "first", "score": 3}])
    _jsonl(ws / "bad_winner.jsonl", [{**pair, "winner": "model_c"}])
    _jsonl(ws / "review_a_b.jsonl", [{"question_id": 1, "score": ["eight", 7]}])
    (ws / "empty.jsonl").write_text("")
    (ws / "done" / "j.jsonl").write_text('{"judgment_id": "x", "kind": "sing\n' + json.dumps({"judgment_id": "y"}) + "\n")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (b"<dir>" if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed again when the block ends: nothing listens
    with JudgeServer() as live, JudgeServer(api_key="the-right-key-0000", echo_auth=True) as locked:
        yield {"url": live.url, "locked": locked.url, "dead": dead}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tiny_gpt2: Path, servers: dict[str, str], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    _workspace(ws, tiny_gpt2.name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(ws / "xdg"))  # the default judge cache lands in the workspace too
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    before = _snapshot(ws)
    fill = {"ws": str(ws), "model": str(tiny_gpt2), **servers}
    code, out, err = run_main(monkeypatch, capsys, *(a.format(**fill) for a in case.args))
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.says.format(**fill) in lines[0]
    assert "Traceback" not in err + out and KEY not in err + out
    assert _snapshot(ws) == before  # nothing new, nothing half-written, nothing changed


def test_table_covers_every_command() -> None:
    commands = {c.args[0] if c.args[0] != "judge" else f"judge {c.args[1]}" for c in CASES}
    assert commands == {"generate", "judge single", "judge multi", "judge pairwise", "tournament"}
    assert len(CASES) >= 12 and {c.code for c in CASES} == {2, 3}
