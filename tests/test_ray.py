"""`harness run --ray`: a real Ray cluster on this machine (started and stopped here), a tiny GPT-2 with two LoRA
adapters, real GSM8K and ARC-Easy rows. Two replicas give the one-process results and samples exactly; a replica
killed mid-run is restarted and the run still gives them, each request stored once; a replica that cannot build
the model stops the run with one line naming the node, and nothing is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, harness_cli, run_main

pytest.importorskip("ray")

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A one-node cluster of 2 CPUs on private ports and a private temp dir; every process of it is killed after
    the module (its daemons share the `ray start` process group; workers exit with their raylet)."""
    mp = pytest.MonkeyPatch()
    # no token authentication, whatever ~/.ray/auth_token holds (`ray start` turns it on when that file exists and a
    # driver joining HOST:PORT would need the token); the drivers below inherit this
    mp.setenv("RAY_AUTH_MODE", "disabled")
    temp = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    ports = {name: _free_port() for name in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")}
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         *(f"--{k}={v}" for k, v in ports.items())],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:]
        yield f"127.0.0.1:{ports['port']}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)
        mp.undo()


@pytest.fixture(scope="module")
def adapters(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LoRA adapters with random (non-zero) weights, so every variant answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for i, name in enumerate(("math", "sci")):
        torch.manual_seed(100 + i)
        peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2),
                              LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn"], init_lora_weights=False))
        path = tmp_path_factory.mktemp("adapters") / name
        peft.save_pretrained(path)
        out.append(path)
    return out


def _args(model: Path, adapters: list[Path], data: Path, out: Path, name: str) -> list[str]:
    """Base + two adapters on GSM8K (generation) and ARC-Easy (log-likelihoods), two requests per model call."""
    return ["run", "-m", str(model), *(x for a in adapters for x in ("-a", str(a))), "--with-base",
            "-t", "gsm8k,arc_easy", "--data-dir", str(data), "--limit", "10", "--max-new-tokens", "16", "-b", "2",
            "-o", str(out), "--run-name", name, "-q"]


def _comparable(run_dir: Path) -> tuple[dict, dict[str, str]]:
    """results.json without what differs between any two runs (time, command, cluster), and the samples files."""
    res = json.loads((run_dir / "results.json").read_text())
    for key in ("created", "cluster", "git_commit"):
        res.pop(key, None)
    res["run"].pop("command")
    for entry in res["tasks"].values():
        entry.pop("wall_time_s")
    return res, {p.name: p.read_text() for p in sorted((run_dir / "samples").iterdir())}


def _store_rows(out: Path) -> tuple[dict[tuple[str, str], str], int]:
    """({(model, key): answer}, rows ever inserted): a request answered twice would have been replaced, and a
    replaced row takes a new rowid, so max(rowid) counts every insert."""
    db = sqlite3.connect(out / ".store.sqlite")
    rows = {(m, k): a for m, k, a in db.execute("SELECT model, key, answer FROM answers")}
    (inserted,) = db.execute("SELECT MAX(rowid) FROM answers").fetchone()
    db.close()
    return rows, int(inserted or 0)


def _answers_stored(out: Path) -> bool:
    """Whether the running driver has stored any answer yet (its store may not exist, or be half-created)."""
    try:
        return (out / ".store.sqlite").exists() and _store_rows(out)[1] > 0
    except sqlite3.OperationalError:
        return False


LABELS = ("base", "math", "sci")


@pytest.fixture(scope="module")
def one_process(tiny_gpt2: Path, adapters: list[Path], shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run in one process, no Ray, on one thread like each replica (one CPU each): torch's
    float sums follow the thread count, so a log-likelihood may differ in its last bit between 1 and 2 threads."""
    out = tmp_path_factory.mktemp("one-process")
    harness_cli(*_args(tiny_gpt2, adapters, shared_data, out, "ref"), env={"OMP_NUM_THREADS": "1"}, check=True)
    return out


def test_any_order_session_answers_as_the_in_order_one(tiny_gpt2: Path, adapters: list[Path]) -> None:
    """The replicas' HF mode (every adapter loaded, switched per batch) against the in-order path, variants asked
    backwards and revisited."""
    from harness.backends.hf import HFSession
    from harness.models.loading import ModelSpec
    from harness.requests import Generate, LogLikelihood

    spec = ModelSpec(model=str(tiny_gpt2), adapters=[str(a) for a in adapters], with_base=True, batch_size=2)
    lls = [LogLikelihood("Question: Tom has 3 apples and buys", " 4"), LogLikelihood("Question: How many", " eggs")]
    gens = [Generate("Question: Janet has 16 ducks.", max_new_tokens=8), Generate("Question: A", max_new_tokens=8)]
    ordered = HFSession(spec)
    want = {}
    for v in ordered.variants:
        m = ordered.model_for(v.label)
        want[v.label] = (m.loglikelihood(lls), m.generate(gens))
    assert len({json.dumps(w) for w in want.values()}) == 3  # the adapters change the answers
    anyorder = HFSession(spec, any_order=True)
    assert [v.identity for v in anyorder.variants] == [v.identity for v in ordered.variants]
    for label in ("sci", "base", "math", "sci", "base"):
        m = anyorder.model_for(label)
        assert (m.loglikelihood(lls), m.generate(gens)) == want[label], label


def test_two_replicas_match_one_process(ray_head: str, tiny_gpt2: Path, adapters: list[Path], shared_data: Path,
                                        one_process: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    proc = harness_cli(*_args(tiny_gpt2, adapters, shared_data, out, "ray"), "--ray", ray_head, "--replicas", "2",
                       check=True)
    assert proc.stderr.count("ready on node") == 2
    for label in LABELS:
        assert _comparable(out / f"ray__{label}") == _comparable(one_process / f"ref__{label}"), label
    res = json.loads((out / "ray__math" / "results.json").read_text())
    cluster = res["cluster"]
    assert cluster["replicas"] == 2 and cluster["per_replica"] == {"CPU": 1.0, "GPU": 0.0}
    assert len(cluster["nodes"]) == 1 and cluster["nodes"][0]["CPU"] == 2.0
    assert cluster["replica_restarts"] == 0 and cluster["startup_s"]["connect_s"] > 0
    assert list(res).index("cluster") == list(res).index("model") + 1
    rows, inserted = _store_rows(out)
    assert rows == _store_rows(one_process)[0] and inserted == len(rows)


def _start(args: list[str], err: Path) -> subprocess.Popen[str]:
    """`harness ARGS` in the background, its stderr (the replicas' pids among it) going to `err`."""
    with err.open("w") as f:
        return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=f,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})


def _replica_pids_once_answering(proc: subprocess.Popen[str], err: Path, out: Path, replicas: int) -> list[int]:
    """The replicas' pids, as soon as every replica is up and some answers are stored (so batches are in flight and
    the run is not finished); [] if the run ended first."""
    deadline = time.time() + 400
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
        pids = [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in err.read_text().splitlines() if "ready on node" in line]
        if len(pids) == replicas and _answers_stored(out):
            return pids
    return []


@pytest.mark.parametrize("replicas", [2, 1])
def test_replica_killed_mid_run_is_replaced_and_results_are_identical(
        replicas: int, ray_head: str, tiny_gpt2: Path, adapters: list[Path], shared_data: Path, one_process: Path,
        tmp_path: Path) -> None:
    """With two replicas the other one may finish the run; with one, the run finishes only if Ray restarts it and
    its lost batches are answered again."""
    out, err = tmp_path / "ray", tmp_path / "stderr.txt"
    proc = _start([*_args(tiny_gpt2, adapters, shared_data, out, "ray"), "--ray", ray_head, "--replicas", str(replicas)], err)
    pids = _replica_pids_once_answering(proc, err, out, replicas)
    assert pids, err.read_text()
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=600)
    log = err.read_text()
    assert proc.returncode == 0, log[-3000:]
    assert f"(pid {victim}) died" in log, log
    assert "back on node" in log or replicas > 1, log
    for label in LABELS:
        assert _comparable(out / f"ray__{label}") == _comparable(one_process / f"ref__{label}"), label
    assert json.loads((out / "ray__base" / "results.json").read_text())["cluster"]["replica_restarts"] == 1
    rows, inserted = _store_rows(out)
    assert rows == _store_rows(one_process)[0]
    assert inserted == len(rows)  # no request answered twice in the store
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)


def test_driver_killed_resumes_with_identical_results(ray_head: str, tiny_gpt2: Path, adapters: list[Path],
                                                      shared_data: Path, one_process: Path, tmp_path: Path) -> None:
    """kill -9 of the driver mid-run: its replicas go with it (Ray ends a dead driver's actors), nothing is
    written; --resume answers only what the store lacks and gives the one-process results."""
    out, err = tmp_path / "ray", tmp_path / "stderr.txt"
    args = [*_args(tiny_gpt2, adapters, shared_data, out, "ray"), "--ray", ray_head, "--replicas", "2"]
    proc = _start(args, err)
    pids = _replica_pids_once_answering(proc, err, out, 2)
    assert pids, err.read_text()
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not list(out.glob("*/results.json"))
    stored = _store_rows(out)[1]
    deadline = time.time() + 120
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.5)
    assert not any(Path(f"/proc/{p}").exists() for p in pids), "the dead driver's replicas are still running"
    again = harness_cli(*args, "--resume", check=True)
    assert sum(int(ln.split(": ")[-1].split()[0]) for ln in again.stderr.splitlines() if "answers from the store" in ln) \
        == stored
    for label in LABELS:
        assert _comparable(out / f"ray__{label}") == _comparable(one_process / f"ref__{label}"), label
    rows, inserted = _store_rows(out)
    assert rows == _store_rows(one_process)[0] and inserted == len(rows)


def test_replica_that_cannot_build_stops_the_run(ray_head: str, tiny_gpt2: Path, shared_data: Path, tmp_path: Path) -> None:
    """Weights the replicas cannot read (here truncated; on a real cluster: missing on that node, out of memory):
    exit 2, one error line naming the node, no traceback, nothing written."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_gpt2, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "out"
    proc = harness_cli("run", "-m", str(broken), "-t", "arc_easy", "--data-dir", str(shared_data), "--limit", "4",
                       "-o", str(out), "--ray", ray_head, "--replicas", "2", "-q")
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot build the model" in errors[0] and "on node " in errors[0] and "model.safetensors" in errors[0]
    assert not out.exists() or not any(out.iterdir())


def test_too_many_replicas_for_the_cluster(ray_head: str, tiny_gpt2: Path, shared_data: Path, tmp_path: Path) -> None:
    proc = harness_cli("run", "-m", str(tiny_gpt2), "-t", "arc_easy", "--data-dir", str(shared_data), "--limit", "2",
                       "-o", str(tmp_path / "out"), "--ray", ray_head, "--replicas", "3", "-q")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --replicas 3: the Ray cluster has 2 CPU(s), room for 2")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flags", "needle"), [
    (["--replicas", "2"], "--replicas: only with --ray"),
    (["--ray-cpus-per-replica", "2"], "--ray-cpus-per-replica: only with --ray"),
    (["--ray", "head-without-port"], "expected auto or HOST:PORT"),
    (["--ray", "auto", "--replicas", "0"], "--replicas: must be > 0"),
    (["--ray", "auto", "--ray-cpus-per-replica", "0"], "--ray-cpus-per-replica: must be > 0"),
    (["--ray", f"127.0.0.1:{_free_port()}"], "no Ray head answers there"),
])
def test_ray_flag_errors(flags: list[str], needle: str, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(monkeypatch, capsys, "run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data),
                            "-o", str(tmp_path / "out"), *flags)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert not (tmp_path / "out").exists()
