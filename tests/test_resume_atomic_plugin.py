"""Resume after kill -9, atomic result files, and a task plugin from another distribution."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.results import atomic_write_json


def _store_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(str(db), timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_resume_after_kill_9_recomputes_nothing_and_matches(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                                                           cli) -> None:
    args = ["run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "30",
            "--batch-size", "1", "--max-new-tokens", "40", "--run-name", "r", "-q"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "-o", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / ".store.sqlite"
    deadline = time.time() + 300
    while _store_count(db) < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _store_count(db)
    assert 5 <= done_before < 30, "the run must be killed part-way"
    assert not (killed / "r" / "results.json").exists()

    resumed = cli(*args, "-o", str(killed), "--resume", check=True)
    m = re.search(r"(\d+) answers from the store, (\d+) to compute", resumed.stderr)
    assert m, resumed.stderr
    assert int(m.group(1)) == done_before and int(m.group(1)) + int(m.group(2)) == 30

    clean = tmp_path / "clean"
    cli(*args, "-o", str(clean), check=True)
    a = json.loads((killed / "r" / "results.json").read_text())
    b = json.loads((clean / "r" / "results.json").read_text())
    assert a["tasks"]["gsm8k"]["metrics"] == b["tasks"]["gsm8k"]["metrics"]
    assert (killed / "r" / "samples" / "gsm8k.jsonl").read_text() == (clean / "r" / "samples" / "gsm8k.jsonl").read_text()
    # a second resume finds everything in the store
    again = cli(*args, "-o", str(killed), "--resume", check=True)
    assert "30 answers from the store, 0 to compute" in again.stderr


def test_atomic_write_never_leaves_half_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    atomic_write_json(target, {"v": 1})

    def boom(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(target, {"v": 2, "big": "x" * 100_000})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind
    monkeypatch.undo()
    with pytest.raises(TypeError):
        atomic_write_json(target, {1j: 1})  # unserialisable key: nothing written
    assert json.loads(target.read_text()) == {"v": 1}


PLUGIN = '''
"""A task defined outside harness: does the model prefer the right word?"""
from harness.requests import LogLikelihood
from harness.task import Task


class PreferWord(Task):
    name = "prefer_word"
    output_type = "loglikelihood"
    metrics = ("acc",)
    data_source = "inline rows"

    def docs(self):
        return [{"id": str(i), "ctx": f"Question: Tom has {i} apples.\\nAnswer:", "good": f" {i}", "bad": " banana"}
                for i in range(5)]

    def requests(self, doc, model):
        return [LogLikelihood(doc["ctx"], doc["good"]), LogLikelihood(doc["ctx"], doc["bad"])]

    def score(self, doc, answers, model):
        return {"metrics": {"acc": float(answers[0][0] > answers[1][0])}, "lls": [a[0] for a in answers]}
'''


def test_external_plugin_distribution_registers_and_runs(tiny_gpt2: Path, tmp_path: Path, cli) -> None:
    src = tmp_path / "plugin-src"
    src.mkdir()
    (src / "ext_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "harness-ext-plugin"
        version = "0.0.1"
        [project.entry-points."harness.tasks"]
        prefer_word = "ext_plugin:PreferWord"
        [tool.setuptools]
        py-modules = ["ext_plugin"]
    """))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(src)], check=True, capture_output=True)
    env = {"PYTHONPATH": str(site)}
    listed = cli("tasks", env=env, check=True)
    assert "prefer_word" in listed.stdout and "loglikelihood" in listed.stdout
    assert "prefer_word" not in cli("tasks", check=True).stdout  # only where the plugin is installed
    out = tmp_path / "results"
    cli("run", "-m", str(tiny_gpt2), "-t", "prefer_word", "-o", str(out), "--run-name", "ext", "-q", env=env,
        check=True)
    res = json.loads((out / "ext" / "results.json").read_text())
    assert res["tasks"]["prefer_word"]["n"] == 5
    samples = [json.loads(x) for x in (out / "ext" / "samples" / "prefer_word.jsonl").read_text().splitlines()]
    assert all(s["metrics"]["acc"] == float(s["lls"][0] > s["lls"][1]) for s in samples)
