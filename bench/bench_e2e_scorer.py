"""Bench: scoring the whole E2E test set (630 MRs, 4,693 references) with ours vs the official E2E scorer.

Both score the same files in the same run: `harness score e2e` (a fresh process, like the official one) and the
official `measure_scores.py` (Perl mteval-v13a for BLEU/NIST; Java PTBTokenizer twice, METEOR 1.5, ROUGE-L, CIDEr).
Ours runs twice on an empty cache: "cold" includes METEOR's own FilterParaphrase pass over the full paraphrase table
(cached per reference set), "warm" is every later scoring against the same references (e.g. each checkpoint against
the test set). Prints the wall times, the ratios (target: ours <= 0.5x the official) and whether every metric agrees
to the official scorer's printed 4 decimals.

The official scorer cannot ship with this repository. To include it:
    git clone https://github.com/tuetschek/e2e-metrics /path/e2e-metrics
    pip install -r /path/e2e-metrics/requirements.txt        # into the Python given by --official-python
    cpanm XML::Twig   (or: apt-get install libxml-twig-perl)  # mteval-v13a-sig.pl loads it
    python bench/bench_e2e_scorer.py --official /path/e2e-metrics
Without --official the bench times ours only and says so.

Default inputs: ../shared/data/e2e/e2e-dataset/testset_w_refs.csv and a deterministic rule-based system output
(tests/e2e_systems.py) for each of its 630 MRs; `--hyps FILE` scores your own outputs instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
DEFAULT_REFS = ROOT.parent / "shared" / "data" / "e2e" / "e2e-dataset" / "testset_w_refs.csv"
METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


def template_hyps(refs: Path, out: Path) -> Path:
    from e2e_systems import template_output

    from harness.score_cli import read_e2e_refs

    _, mrs = read_e2e_refs(refs)
    out.write_text("\n".join(template_output(m) for m in mrs or []) + "\n", encoding="utf-8")
    return out


def run_ours(refs: Path, hyps: Path, skip_meteor: bool, cache: Path) -> tuple[float, dict[str, float]]:
    cmd = [sys.executable, "-m", "harness.cli", "score", "e2e", "--refs", str(refs), "--hyps", str(hyps)]
    if skip_meteor:
        cmd.append("--skip-meteor")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"harness score e2e failed:\n{proc.stderr[-2000:]}")
    return dt, json.loads(proc.stdout)


def run_official(official: Path, python: str, refs: Path, hyps: Path) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    proc = subprocess.run([python, str(official / "measure_scores.py"), str(refs), str(hyps)], capture_output=True,
                          text=True, cwd=official)
    dt = time.perf_counter() - t0
    scores = dict(re.findall(r"^(BLEU|NIST|METEOR|ROUGE_L|CIDEr): ([0-9.]+)$", proc.stdout, re.M))
    if proc.returncode != 0 or len(scores) != 5:
        sys.exit(f"official measure_scores.py failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    return dt, {k: float(v) for k, v in scores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", type=Path, default=DEFAULT_REFS, help="references (official formats)")
    ap.add_argument("--hyps", type=Path, default=None, help="system outputs (default: rule-based, one per MR)")
    ap.add_argument("--official", type=Path, default=None, help="checkout of tuetschek/e2e-metrics")
    ap.add_argument("--official-python", default=sys.executable, help="Python with the official scorer's requirements")
    ap.add_argument("--skip-meteor", action="store_true", help="time ours without METEOR (no Java)")
    args = ap.parse_args()
    if not args.refs.exists():
        sys.exit(f"{args.refs}: not found (pass --refs)")
    with tempfile.TemporaryDirectory() as tmp:
        hyps = args.hyps or template_hyps(args.refs, Path(tmp) / "template-output.txt")
        print(f"refs: {args.refs}\nhyps: {hyps if args.hyps else 'rule-based output, one line per MR'}")
        cache = Path(tmp) / "cache"
        t_cold, ours = run_ours(args.refs, hyps, args.skip_meteor, cache)
        t_ours, warm = run_ours(args.refs, hyps, args.skip_meteor, cache)
        assert warm == ours, "warm and cold runs disagree"
        print(f"\nours, cold cache (harness score e2e):     {t_cold:7.2f} s  " +
              "  ".join(f"{m}={ours[m]:.4f}" for m in METRICS if m in ours))
        print(f"ours, warm cache (same references again): {t_ours:7.2f} s")
        if args.official is None or not (args.official / "measure_scores.py").exists():
            where = "not given" if args.official is None else f"{args.official}/measure_scores.py not found"
            print(f"official scorer: SKIPPED (--official {where}); see this file's docstring for how to get it")
            return
        t_off, off = run_official(args.official, args.official_python, args.refs, hyps)
    print(f"official (measure_scores.py):              {t_off:7.2f} s  " +
          "  ".join(f"{m}={off[m]:.4f}" for m in METRICS))
    for label, t in (("cold", t_cold), ("warm", t_ours)):
        ratio = t / t_off
        print(f"time ratio ours/official, {label}: {ratio:.2f}x  (target <= 0.50x: {'met' if ratio <= 0.5 else 'NOT met'})")
    diffs = {m: abs(ours[m] - off[m]) for m in METRICS if m in ours}
    # the official scorer prints 4 decimals: agreement means our value rounds to the same digits (|diff| <= 5e-5)
    same = all(f"{ours[m]:.4f}" == f"{off[m]:.4f}" for m in diffs)
    print("numbers: " + ("identical to 4 decimals for " if same else "DIFFER: ") +
          ", ".join(f"{m} (|diff| {d:.1e})" for m, d in diffs.items()))


if __name__ == "__main__":
    main()
