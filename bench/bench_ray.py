"""Bench: `harness run --ray` with 1 and 2 replicas (1 CPU, 1 torch thread each) on this machine's cores.

A 124M-parameter GPT-2-shaped model (random init, the real GPT-2 tokenizer from ../shared/data/gpt2-bpe) scores the
first --rows rows of the real ARC-Easy test and WinoGrande dev files: once in one process (1 thread), then on a
private local Ray cluster (started here, stopped at the end) with 1 and with 2 replicas. Prints Ray's start-up
(cluster start, driver connect, replicas building the model) apart from the answering time; the speed-up of 2
replicas over 1 on answering (target >= 1.8x on 2 cores) and on the whole command; the same by CPU seconds spent
answering (what 2 idle cores give, steady on a shared machine); and whether every per-doc score and log-likelihood
is identical across the three runs.

    .venv/bin/python bench/bench_ray.py            # 200 rows per task
    .venv/bin/python bench/bench_ray.py --quick    # 60 rows per task
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_forgetting import build_model  # the one 124M GPT-2 builder: the same model (seed 0) in every bench

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
TASKS = ("arc_easy", "winogrande")
RAY = Path(sys.executable).parent / "ray"


def prepare_data(work: Path) -> Path:
    """A --data-dir of links to the official ARC-Easy and WinoGrande files."""
    data = work / "data"
    for sub, files in (("arc", ["ARC-Easy-Test.jsonl"]), ("winogrande", ["dev.jsonl", "dev-labels.lst"])):
        (data / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            (data / sub / f).symlink_to(SHARED / sub / f)
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(temp: Path, cpus: int) -> tuple[str, int, float]:
    """(address, process group, seconds) of a one-node cluster on private ports; its daemons share the group."""
    ports = {name: _free_port() for name in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # this cluster and the runs below: no token, whatever ~/.ray holds
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
                             *(f"--{k}={v}" for k, v in ports.items())],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        sys.exit("ray start failed:\n" + out[-2000:])
    return f"127.0.0.1:{ports['port']}", proc.pid, time.perf_counter() - t0


def run(name: str, model: Path, data: Path, out: Path, rows: int, batch: int, extra: list[str]) -> dict:
    """One `harness run` in a subprocess: wall time, answering time, start-up, per-doc scores."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "harness.cli", "run", "-m", str(model), "-t", ",".join(TASKS), "--data-dir", str(data),
           "--limit", str(rows), "-b", str(batch), "-o", str(out), "--run-name", name, "-q", *extra]
    print(f"running {name} ...", file=sys.stderr)
    t0, busy0, own0 = time.perf_counter(), machine_busy_s(), children_cpu_s()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy, driver = machine_busy_s() - busy0, children_cpu_s() - own0
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    res = json.loads((out / name / "results.json").read_text())
    per_doc, requests = {}, 0
    for t in TASKS:
        samples = [json.loads(x) for x in (out / name / "samples" / f"{t}.jsonl").read_text().splitlines()]
        requests += sum(len(s["loglikelihoods"]) for s in samples)
        per_doc[t] = [(s["metrics"], s["loglikelihoods"]) for s in samples]
    cluster = res.get("cluster", {})
    walls = [e["wall_time_s"] for e in res["tasks"].values()]
    # one process: tasks one after the other; on Ray, each task's time runs from the start of answering to its end
    answer = max(walls) if cluster else sum(walls)
    return {"wall": wall, "answer": answer, "requests": requests, "busy": busy, "driver": driver,
            "startup": cluster.get("startup_s", {}), "work": cluster.get("replica_work", []), "per_doc": per_doc,
            "metrics": {t: {m: v["value"] for m, v in res["tasks"][t]["metrics"].items()} for t in TASKS}}


def machine_busy_s() -> float:
    """CPU seconds every core of this machine has spent not idle since boot (Linux /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the `harness run` driver; Ray's workers are not ours)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def driver_costs(work: Path) -> dict[str, float]:
    """What the driver spends per run and per batch, apart from any model: planning 10,000 log-likelihood requests
    (dedupe, store look-up, sort, batching) and recording 1,000 batches of 16 answers (one transaction each)."""
    from harness.requests import LogLikelihood
    from harness.runner import plan_requests, record_many
    from harness.store import Store

    reqs = [LogLikelihood(context=f"Question {i // 4}: which of these is the answer, given all that came before?",
                          continuation=f" choice {i % 4} of question {i // 4}") for i in range(10_000)]
    store = Store.open(work / "driver.sqlite")
    t0 = time.perf_counter()
    plan = plan_requests("bench-model", reqs, 16, store, False, "bench")
    plan_s = time.perf_counter() - t0
    batches = (plan.batches * (1000 // len(plan.batches) + 1))[:1000]
    t0 = time.perf_counter()
    for b in batches:
        record_many([(plan, b, [(-1.5, False)] * len(b.items), "bench")], store)
    store_s = time.perf_counter() - t0
    return {"plan_s": plan_s, "store_s": store_s, "store_rate": len(batches) / store_s}


def report(args: argparse.Namespace, start_s: float, runs: dict[str, dict], costs: dict[str, float]) -> None:
    one, two = runs["ray, 1 replica"], runs["ray, 2 replicas"]
    print(f"\nray bench: {args.rows} rows each of {', '.join(TASKS)}; 124M GPT-2 shape; batch {args.batch_size}; "
          f"1 CPU / 1 thread per replica; {os.cpu_count()} cores")
    print(f"ray start-up (ray start --head, separate from every run below): {start_s:.1f} s")
    print(f"{'':18}{'requests':>9}{'connect s':>11}{'build s':>9}{'answer s':>10}{'req/s':>8}{'wall s':>9}")
    for name, r in runs.items():
        su = r["startup"]
        print(f"{name:18}{r['requests']:>9}{su.get('connect_s', 0):>11.1f}{su.get('replicas_s', 0):>9.1f}"
              f"{r['answer']:>10.1f}{r['requests'] / r['answer']:>8.1f}{r['wall']:>9.1f}")
    print(f"speed-up 2 replicas / 1: {one['answer'] / two['answer']:.2f}x answering (target >= 1.8x), "
          f"{one['wall'] / two['wall']:.2f}x whole command (imports, connect and model build included)")
    cpu1 = sum(w["cpu_s"] for w in one["work"])
    cpu2 = max((w["cpu_s"] for w in two["work"]), default=0.0)
    split = ", ".join(f"replica {w['replica']}: {w['batches']} batches, {w['cpu_s']:.1f} CPU s, busy "
                      f"{100 * w['busy_s'] / two['answer']:.0f}% of the time" for w in two["work"])
    if cpu2:
        print(f"CPU-time speed-up (1 replica's CPU seconds answering / the busiest of 2): {cpu1 / cpu2:.2f}x, what 2 idle "
              f"cores give; the wall-clock figure above is lower when other processes share the cores")
        print(f"  2 replicas: {split} (busy: inside a forward; the rest is waiting for the driver, or the tail)")
        print(f"  CPU seconds answering, all replicas: {cpu1:.1f} with 1, {sum(w['cpu_s'] for w in two['work']):.1f} with 2 "
              "(more with 2: the replicas share the caches and memory bandwidth of these cores)")
    print("where the cores went during each whole command (CPU s): replicas answering / the driver process / "
          "everything else (Ray's daemons and workers starting, other processes)")
    for name, r in runs.items():
        answering = sum(w["cpu_s"] for w in r["work"])
        rest = r["busy"] - r["driver"] - answering
        print(f"  {name:18}{answering:>8.1f} /{r['driver']:>7.1f} /{rest:>7.1f}   of {os.cpu_count()} x {r['wall']:.1f} s"
              " wall")
    ref = runs["one process"]
    same = all(r["per_doc"] == ref["per_doc"] and r["metrics"] == ref["metrics"] for r in runs.values())
    print(f"scores: {'identical' if same else 'DIFFERENT'} per-doc metrics and log-likelihoods in all three runs")
    for t in TASKS:
        print(f"  {t}: {ref['metrics'][t]}")
    print(f"driver alone: plans 10,000 log-likelihood requests in {costs['plan_s']:.2f} s; records 1,000 batches of 16 "
          f"answers in {costs['store_s']:.2f} s ({costs['store_rate']:.0f} batches/s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200, help="rows per task (default 200)")
    p.add_argument("--quick", action="store_true", help="60 rows per task")
    p.add_argument("--batch-size", type=int, default=16, help="requests per forward (default 16)")
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-gpt2-124m")
    args = p.parse_args()
    if args.quick:
        args.rows = 60
    if not (SHARED / "MANIFEST.json").exists():
        sys.exit(f"bench needs the real data at {SHARED}")
    sys.path.insert(0, str(ROOT))
    model = build_model(args.model_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    temp = Path(tempfile.mkdtemp(prefix="rayb", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    pgid = None
    try:
        data = prepare_data(work)
        costs = driver_costs(work)
        runs = {"one process": run("local", model, data, work / "out", args.rows, args.batch_size, [])}
        address, pgid, start_s = start_cluster(temp, cpus=2)
        for n in (1, 2):
            runs[f"ray, {n} replica{'s' if n > 1 else ''}"] = run(
                f"ray{n}", model, data, work / "out", args.rows, args.batch_size,
                ["--ray", address, "--replicas", str(n), "--ray-cpus-per-replica", "1"])
        report(args, start_s, runs, costs)
    finally:
        if pgid is not None:
            os.killpg(pgid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
