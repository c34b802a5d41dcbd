"""Judge throughput: N pairwise judge calls against a local OpenAI-compatible server with fixed latency per call.

Prints judgments/s at concurrency 1 and 32 (target: within 20% of the ideal 32x speed-up, i.e. >= 25.6x)
and the time of a re-run served from the cache. A pairwise judgment of one pair asks the judge twice
(both orders); N counts judge calls, so N = 1000 is 500 pairs in both orders.

    .venv/bin/python bench/bench_judge.py            # 1000 calls, 100 ms each: about 100 s at concurrency 1
    .venv/bin/python bench/bench_judge.py --n 200    # quicker
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from judges.client import JudgeSettings, ResponseCache  # noqa: E402
from judges.grading import pairwise_jobs, run_jobs  # noqa: E402
from judges.questions import Question  # noqa: E402


class ServerProcess:
    """tests/judge_server.py in its own process (a real judge is remote; sharing our GIL would slow both)."""

    def __init__(self, latency: float) -> None:
        cmd = [sys.executable, str(ROOT / "tests" / "judge_server.py"), "--latency", str(latency)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.proc.kill()
            raise SystemExit("judge server did not start")

    def requests(self) -> int:
        return int(httpx.get(self.url + "/stats").json()["requests"])

    def reset_counts(self) -> None:
        httpx.post(self.url + "/reset", content=b"")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def workload(n_calls: int) -> tuple[list[Question], dict[str, dict[str, list[str]]]]:
    """Two models, n_calls / 2 questions: one pair per question, judged in both orders."""
    n_q = max(1, n_calls // 2)
    qs = [Question(str(i), (f"Bench question {i}: explain topic {i}.",)) for i in range(n_q)]
    answers = {"alpha": {q.question_id: [f"Answer {q.question_id} " + "detail " * (5 + int(q.question_id) % 7)]
                         for q in qs},
               "beta": {q.question_id: [f"Reply {q.question_id} " + "point " * (4 + int(q.question_id) % 5)]
                        for q in qs}}
    return qs, answers


def timed(jobs: list, settings: JudgeSettings, cache: ResponseCache | None) -> tuple[float, object]:
    t = time.perf_counter()
    run = run_jobs(jobs, settings, cache, quiet=True)
    return time.perf_counter() - t, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="judge calls per run (pairs x 2 orders)")
    ap.add_argument("--latency", type=float, default=0.1, help="server seconds per call")
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    qs, answers = workload(args.n)
    with ServerProcess(args.latency) as srv, tempfile.TemporaryDirectory() as tmp:
        results = {}
        for conc in (1, args.concurrency):
            s = JudgeSettings("bench-judge", srv.url, timeout=30, max_concurrency=conc)
            jobs, _ = pairwise_jobs(qs, answers, s)
            calls = 2 * len(jobs)
            srv.reset_counts()
            secs, run = timed(jobs, s, None)
            assert srv.requests() == calls and len(run.records) == len(jobs), "every call sent once, every judgment made"
            results[conc] = calls / secs
            print(f"concurrency {conc:3d}: {calls} calls in {secs:7.2f} s = {results[conc]:7.1f} judgments/s "
                  f"(ideal {conc / args.latency:.1f}/s)")
        s = JudgeSettings("bench-judge", srv.url, timeout=30, max_concurrency=args.concurrency)
        jobs, _ = pairwise_jobs(qs, answers, s)
        cache = ResponseCache(Path(tmp) / "cache.sqlite")
        fill, _ = timed(jobs, s, cache)
        srv.reset_counts()
        again, run = timed(jobs, s, cache)
        assert srv.requests() == 0, "cached re-run must send nothing"
    speedup = results[args.concurrency] / results[1]
    target = 0.8 * args.concurrency
    print(f"speed-up at {args.concurrency}: {speedup:.1f}x (ideal {args.concurrency}x, target >= {target:.1f}x): "
          f"{'OK' if speedup >= target else 'BELOW TARGET'}")
    print(f"cache: first run {fill:.2f} s, cached re-run {again:.3f} s with 0 requests "
          f"({2 * len(jobs) / again:.0f} judgments/s)")


if __name__ == "__main__":
    main()
