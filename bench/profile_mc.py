"""Profile: what bounds multiple-choice scoring on the hf backend (the forgetting suite's ARC-Easy + WinoGrande).

The same 124M GPT-2-shaped random model and real rows as bench/bench_forgetting.py, answered by `--backend hf` in
this process under torch.profiler. Printed:

- work: tokens a forward ran (padding included) against the tokens of the requests (what lm-eval runs: every
  request whole, context and continuation) and against the distinct tokens (every shared context counted once):
  what context sharing saved and what padding costs;
- the vocabulary projection: positions it ran at against positions that are scored;
- time by kind of operation: the transformer's matrix products, the LM head's, attention, KV-cache copies (each
  stage-2 chunk's copy of its groups' cache), log-softmax, and the rest (Python and small ops).

    .venv/bin/python bench/profile_mc.py              # 100 rows per task (~2 min)
    .venv/bin/python bench/profile_mc.py --rows 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_forgetting import SHARED, TASKS, build_model, prepare_data  # noqa: E402


def requests_of(data: Path, rows: int) -> list[Any]:
    from harness.registry import make_tasks
    from harness.task import CAUSAL, TaskConfig

    out = []
    for name in TASKS:
        [task] = make_tasks(name, TaskConfig(data_dir=data, limit=rows))
        out += [r for d in task.docs()[:rows] for r in task.requests(d, CAUSAL)]
    return list({r.key(): r for r in out}.values())


def kind(name: str, shapes: list[Any], vocab: int) -> str:
    if name in ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear", "aten::bmm"):
        return "LM head (vocabulary projection)" if any(s and s[-1] == vocab for s in shapes) else "matrix products"
    if "attention" in name or name in ("aten::_softmax", "aten::baddbmm"):
        return "attention"
    if name in ("aten::cat", "aten::index_select", "aten::copy_", "aten::clone", "aten::index"):
        return "copies (KV cache, cat, index)"
    if name in ("aten::_log_softmax", "aten::log_softmax"):
        return "log-softmax"
    return "other ops"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-gpt2-124m")
    a = p.parse_args()
    if not (SHARED / "MANIFEST.json").exists():
        sys.exit(f"profile needs the real data at {SHARED}")
    import torch
    from torch.profiler import ProfilerActivity, profile

    from harness.backends.hf import HFBackend
    from harness.models.loading import ModelSpec

    torch.set_num_threads(1)
    model_dir = build_model(a.model_dir)
    with tempfile.TemporaryDirectory(prefix="profile-mc-") as tmp:
        data, _ = prepare_data(Path(tmp))
        reqs = requests_of(data, a.rows)
    session = HFBackend().open(ModelSpec(model=str(model_dir), batch_size=a.batch_size))
    lm = session.model_for(session.variants[0].label)
    hf = lm.model
    vocab = hf.config.vocab_size
    seen = defaultdict(int)

    def count(_mod: Any, args: tuple, kw: dict) -> None:
        ids, mask = kw.get("input_ids"), kw.get("attention_mask")
        seen["forwards"] += 1
        seen["positions"] += ids.numel()
        seen["real"] += int(mask[:, -ids.shape[1]:].sum())
        keep = kw.get("logits_to_keep")
        seen["head"] += int(keep.sum()) if isinstance(keep, torch.Tensor) else ids.shape[0] * int(keep or ids.shape[1])

    hf.register_forward_pre_hook(count, with_kwargs=True)
    toks = [lm._tokens(r) for r in reqs]
    whole = sum(len(t) - 1 for t, _ in toks)  # a request run whole: every token but the last is model input
    distinct = len({tuple(t[:i]) for t, _ in toks for i in range(1, len(t))})  # distinct (prefix) positions
    scored = sum(n for _, n in toks)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        lm.loglikelihood(reqs)
    wall = time.perf_counter() - t0
    by_kind: dict[str, float] = defaultdict(float)
    for e in prof.key_averages(group_by_input_shape=True):
        by_kind[kind(e.key, list(e.input_shapes or []), vocab)] += e.self_cpu_time_total / 1e6
    total = sum(by_kind.values())

    print(f"\nmultiple-choice profile: {len(reqs)} requests ({a.rows} rows each of {', '.join(TASKS)}); 124M GPT-2 shape; "
          f"batch {a.batch_size}; 1 thread; {wall:.1f} s under the profiler, {seen['forwards']} forwards")
    print(f"  tokens run (padding included): {seen['positions']:,}; of them real: {seen['real']:,} "
          f"(padding {100 * (1 - seen['real'] / seen['positions']):.1f}%)")
    print(f"  lm-eval runs every request whole: {whole:,} tokens (before its own padding); distinct prefixes: "
          f"{distinct:,}: context sharing runs {seen['real'] / whole:.2f}x the tokens of whole requests, "
          f"{seen['real'] / distinct:.2f}x the least possible")
    print(f"  vocabulary projection at {seen['head']:,} positions for {scored:,} scored tokens "
          f"({seen['head'] / scored:.2f}x); lm-eval projects every position it runs")
    print("  self CPU time by kind:")
    for k, s in sorted(by_kind.items(), key=lambda x: -x[1]):
        print(f"    {k:34}{s:8.1f} s {100 * s / total:5.1f}%")


if __name__ == "__main__":
    main()
