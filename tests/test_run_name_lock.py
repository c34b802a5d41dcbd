"""Run names are reserved atomically: two concurrent `harness run`s can never both write the same run directory.

The reservation is OUT/.NAME.lock (flock, holding the pid), taken before any data or model loads and released when
the run ends; a lock file left by a dead run is taken over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.evaluate import RunSpec, plan_run_dirs
from harness.models.loading import ModelSpec
from harness.results import read_results

HARNESS = Path(sys.executable).parent / "harness"  # the installed console script


def _start(tiny_gpt2: Path, data: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(HARNESS), "run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(data),
                             "--limit", "6", "--max-new-tokens", "12", "-b", "1", "-o", str(out), "--run-name", "same",
                             "-q", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = p.communicate(timeout=600)
    return p.returncode, err


def _one_line_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _intact(out: Path, n: int = 6) -> None:
    res = read_results(out / "same" / "results.json")
    assert res["tasks"]["gsm8k"]["n"] == n
    rows = (out / "same" / "samples" / "gsm8k.jsonl").read_text().splitlines()
    assert len(rows) == n
    assert not [p.name for p in out.iterdir() if p.name.startswith(".same.")], "no lock, temporary or old dir left"


def test_two_concurrent_runs_with_one_run_name(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    """Started together: exactly one writes the directory, the other exits 2 with one line naming it."""
    out = tmp_path / "o"
    a, b = _start(tiny_gpt2, gsm8k_data, out), _start(tiny_gpt2, gsm8k_data, out)
    (ra, ea), (rb, eb) = _finish(a), _finish(b)
    assert sorted((ra, rb)) == [0, 2], (ea, eb)
    line = _one_line_error(eb if rb == 2 else ea)
    assert str(out / "same") in line
    _intact(out)


def _hold_when_locked(lock: Path, proc: subprocess.Popen[str], timeout: float = 300) -> bool:
    """Pause `proc` (SIGSTOP) as soon as it holds the run name, so the next run surely starts while it does."""
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        try:
            if lock.read_text().strip() == str(proc.pid):
                os.kill(proc.pid, signal.SIGSTOP)
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False  # the old code never takes a lock: the assertions below then fail on what it did instead


def test_concurrent_overwrite_cannot_both_succeed(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert _finish(_start(tiny_gpt2, gsm8k_data, out))[0] == 0
    a = _start(tiny_gpt2, gsm8k_data, out, "--overwrite")
    paused = _hold_when_locked(out / ".same.lock", a)
    try:
        rb, eb = _finish(_start(tiny_gpt2, gsm8k_data, out, "--overwrite"))  # while `a` holds the name
    finally:
        if paused:
            os.kill(a.pid, signal.SIGCONT)
    ra, ea = _finish(a)
    assert ra == 0, ea
    assert rb == 2, eb
    line = _one_line_error(eb)
    assert "in use by another harness run" in line and str(out / "same") in line and f"(pid {a.pid})" in line
    _intact(out)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_of_a_dead_run_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / ".x.lock").write_text(f"{_dead_pid()}\n")  # a run killed with -9 left its lock file
    spec = RunSpec(model=ModelSpec(model="gpt2"), tasks=["gsm8k"], output_dir=out, run_name="x")
    dirs = plan_run_dirs(spec)
    assert (out / ".x.lock").read_text().strip() == str(os.getpid())
    (out / "x").mkdir()
    for flags in ({}, {"resume": True}, {"overwrite": True}):  # held (here, through another open file): refused
        with pytest.raises(HarnessError) as e:
            plan_run_dirs(replace(spec, **flags))
        assert "in use by another harness run" in str(e.value) and f"(pid {os.getpid()})" in str(e.value)
        assert "\n" not in str(e.value)
    default = RunSpec(model=ModelSpec(model="gpt2"), tasks=["gsm8k"], output_dir=out)
    d1, d2 = plan_run_dirs(default), plan_run_dirs(default)  # default names: never the same one twice
    assert d1["base"] != d2["base"]
    for d in (dirs, d1, d2):
        d.release()
    assert [p.name for p in out.iterdir()] == ["x"]
    with pytest.raises(HarnessError, match="already exists"):
        plan_run_dirs(spec)
    assert [p.name for p in out.iterdir()] == ["x"]
    plan_run_dirs(replace(spec, resume=True)).release()  # free again once released


def test_an_error_leaves_no_lock_and_no_new_output_dir(tmp_path: Path) -> None:
    from harness.evaluate import run
    from harness.task import TaskConfig

    (tmp_path / "empty").mkdir()  # no GSM8K rows here and the hub offline: the error comes after the lock is taken
    out = tmp_path / "new" / "o"
    spec = RunSpec(model=ModelSpec(model="gpt2"), tasks=["gsm8k"], output_dir=out, run_name="same",
                   task_cfg=TaskConfig(data_dir=tmp_path / "empty"), quiet=True)
    with pytest.raises(HarnessError):
        run(spec)
    assert not (tmp_path / "new").exists()
