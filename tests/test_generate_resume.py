"""`harness generate` goes through the answer store: killed mid-job (kill -9) it keeps every finished batch, and
--resume computes only the rest, giving the same answers as an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_main

from harness.testing.tiny import word_problem

HARNESS = str(ROOT / ".venv" / "bin" / "harness")
N_QUESTIONS, N_TWO_TURN = 24, 6  # every fourth question has a second turn: 30 generations in all


def store_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(str(db), timeout=1) as con:
            return int(con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet, or the writer holds the lock
        return 0


def questions(path: Path) -> Path:
    rng = random.Random(3)
    rows = []
    for i in range(N_QUESTIONS):
        turns = [word_problem(rng)["question"]]
        if i % 4 == 0:
            turns.append("And how many would two friends have together?")
        rows.append({"question_id": i + 1, "turns": turns})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def answers(path: Path) -> list[dict[str, object]]:
    """The rows without what differs between any two runs (a random answer_id, the time)."""
    return [{k: v for k, v in json.loads(x).items() if k not in ("answer_id", "tstamp")}
            for x in path.read_text().splitlines()]


def from_store(stderr: str) -> list[tuple[int, int]]:
    """(answers from the store, answers computed) per 'turn' line the runner printed."""
    return [(int(a), int(b)) for a, b in re.findall(r"turn \d+: (\d+) answers from the store, (\d+) to compute", stderr)]


def test_generate_kill_9_then_resume(tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    qfile = questions(tmp_path / "q.jsonl")
    args = ["generate", "-m", str(tiny_gpt2), "--questions", str(qfile), "--max-new-tokens", "16", "--batch-size", "1",
            "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([HARNESS, *args, "-o", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = killed / ".store.sqlite"
    deadline = time.time() + 300
    while store_rows(db) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = store_rows(db)
    assert 3 <= done < N_QUESTIONS + N_TWO_TURN, "generate must be killed part-way"
    answer_file = killed / f"{tiny_gpt2.name}.jsonl"
    assert not answer_file.exists()

    resumed = subprocess.run([HARNESS, *args, "-o", str(killed), "--resume"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    counts = from_store(resumed.stderr)
    assert len(counts) == 2, resumed.stderr  # one line per turn
    assert sum(a for a, _ in counts) == done  # every stored answer reused ...
    assert [a + b for a, b in counts] == [N_QUESTIONS, N_TWO_TURN]  # ... and only the rest computed
    assert store_rows(db) == N_QUESTIONS + N_TWO_TURN

    # the answer file is there now: another run into the directory must say how to continue or replace it
    code, _, err = run_main(monkeypatch, capsys, *args, "-o", str(killed))
    assert code == 2 and err.count("\n") == 1 and f"{answer_file.name} already exists; pass --resume" in err
    code, _, err = run_main(monkeypatch, capsys, *args, "-o", str(killed), "--resume")
    assert code == 0 and from_store(err) == [(N_QUESTIONS, 0), (N_TWO_TURN, 0)], err

    clean = tmp_path / "clean"
    code, _, err = run_main(monkeypatch, capsys, *args, "-o", str(clean))
    assert code == 0, err
    assert answers(answer_file) == answers(clean / answer_file.name)
    rows = answers(answer_file)
    assert len(rows) == N_QUESTIONS and sum(len(r["choices"][0]["turns"]) == 2 for r in rows) == N_TWO_TURN  # type: ignore[index]


def test_generate_overwrite_recomputes(tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"question_id": 1, "turns": ["Tom has 3 apples. How many?"]}) + "\n")
    args = ["generate", "-m", str(tiny_gpt2), "--questions", str(qfile), "--max-new-tokens", "4", "-o", str(tmp_path / "o"),
            "-q"]
    assert run_main(monkeypatch, capsys, *args)[0] == 0
    path = tmp_path / "o" / f"{tiny_gpt2.name}.jsonl"
    first = path.read_text()
    code, _, err = run_main(monkeypatch, capsys, *args, "--overwrite")
    assert code == 0 and "from the store" not in err  # recomputed, not read back
    assert answers(path) == [{k: v for k, v in json.loads(first).items() if k not in ("answer_id", "tstamp")}]
    code, _, err = run_main(monkeypatch, capsys, *args, "--overwrite", "--resume")
    assert code == 2 and "--resume and --overwrite" in err
