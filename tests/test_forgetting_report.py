"""The forgetting report: paired statistics, end-to-end command, reproducible from the samples files, leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.forgetting import build_report, paired_comparison


def _mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value written out from the binomial distribution."""
    n = lost + gained
    k = min(lost, gained)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_paired_comparison_mcnemar_and_bootstrap() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(300) < 0.6).astype(float)
    flip = rng.random(300) < 0.2
    adapter = np.where(flip, 1 - base, base)
    out, deltas = paired_comparison(list(base), list(adapter))
    lost, gained = int(((base == 1) & (adapter == 0)).sum()), int(((base == 0) & (adapter == 1)).sum())
    assert (out["lost"], out["gained"]) == (lost, gained) and out["test"] == "mcnemar-exact"
    assert out["p_value"] == pytest.approx(_mcnemar_exact(lost, gained), rel=1e-9)
    assert out["change"] == pytest.approx(adapter.mean() - base.mean())
    lo, hi = out["change_ci95"]
    assert lo < out["change"] < hi and len(deltas) == 2000
    # pairing: the interval of the change is much narrower than an unpaired one would be
    unpaired_se = math.sqrt(base.var(ddof=1) / 300 + adapter.var(ddof=1) / 300)
    assert (hi - lo) < 2 * 1.96 * unpaired_se
    same, _ = paired_comparison(list(base), list(base))
    assert same["p_value"] == 1.0 and same["change_ci95"] == [0.0, 0.0]
    cont, _ = paired_comparison([0.1, 0.5, 0.7, 0.2], [0.2, 0.6, 0.9, 0.2])
    assert cont["test"] == "paired-bootstrap" and 0 <= cont["p_value"] <= 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> dict[str, Any]:
    """`harness forgetting` end to end on a tiny model and two adapters (project-written rows)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.forgetting_cli import forgetting
    from harness.testing.suite import write_suite_data

    root = tmp_path_factory.mktemp("forget")
    data = write_suite_data(root / "data", n=16)
    adapters = []
    for i, scale in enumerate((8, 256)):
        torch.manual_seed(i)
        peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2),
                              LoraConfig(r=4, lora_alpha=scale, target_modules=["c_attn"], init_lora_weights=False))
        peft.save_pretrained(root / f"r{scale}")
        adapters.append(str(root / f"r{scale}"))
    out = root / "results"
    forgetting(model=str(tiny_gpt2), adapter=adapters, target="arc_challenge", tasks="hellaswag,winogrande,arc_easy",
               limit=12, data_dir=data, output_dir=out, run_name="fg", quiet=True)
    return {"out": out, "adapters": adapters}


def test_report_files_and_numbers_from_samples(runs: dict[str, Any]) -> None:
    from PIL import Image

    rep_dir = runs["out"] / "fg__report"
    report = json.loads((rep_dir / "forgetting.json").read_text())
    assert report["suite"] == ["hellaswag", "winogrande", "arc_easy"] and report["target"] == "arc_challenge"
    assert [a["label"] for a in report["adapters"]] == ["r8", "r256"]
    with Image.open(rep_dir / "forgetting.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200
    md = (rep_dir / "forgetting.md").read_text()
    assert "| r256 |" in md and "mean change" in md and "target arc_challenge" in md
    # every score re-derived from the per-choice log-likelihoods in the samples files
    def acc(run: str, task: str, metric: str) -> list[float]:
        rows = [json.loads(x) for x in (runs["out"] / run / "samples" / f"{task}.jsonl").read_text().splitlines()]
        key = "pred_norm" if metric == "acc_norm" else "pred"
        for r in rows:
            lls = np.array(r["loglikelihoods"])
            lens = np.array([len(c) - 1 for c in r["continuations"]])  # continuation = " " + choice
            pred = int(np.argmax(lls / lens)) if metric == "acc_norm" else int(np.argmax(lls))
            assert pred == r[key]
        return [float(r[key] == r["gold"]) for r in rows]

    for a in report["adapters"]:
        changes = []
        for t in report["suite"]:
            m = report["metrics"][t]
            b, x = acc("fg__base", t, m), acc(f"fg__{a['label']}", t, m)
            assert a["tasks"][t]["base"] == pytest.approx(np.mean(b)) and a["tasks"][t]["adapter"] == pytest.approx(np.mean(x))
            changes.append(np.mean(x) - np.mean(b))
        assert a["mean_change"] == pytest.approx(np.mean(changes))
        tb, tx = acc("fg__base", "arc_challenge", "acc_norm"), acc(f"fg__{a['label']}", "arc_challenge", "acc_norm")
        assert a["target"]["change"] == pytest.approx(np.mean(tx) - np.mean(tb))


def test_report_rebuilt_from_runs_is_identical(runs: dict[str, Any], tmp_path: Path) -> None:
    from harness.forgetting_cli import forgetting

    out = runs["out"]
    first = json.loads((out / "fg__report" / "forgetting.json").read_text())
    forgetting(from_runs=[out / "fg__base", out / "fg__r8", out / "fg__r256"], target="arc_challenge",
               tasks="hellaswag,winogrande,arc_easy", output_dir=tmp_path, run_name="again")
    again = json.loads((tmp_path / "again" / "forgetting.json").read_text())
    assert again["adapters"] == first["adapters"] and again["metrics"] == first["metrics"]
    with pytest.raises(HarnessError, match="--from-runs: give the base run directory, then at least one adapter"):
        forgetting(from_runs=[out / "fg__base"], output_dir=tmp_path)
    with pytest.raises(HarnessError, match="has no results for task gsm8k"):
        build_report(out / "fg__base", [out / "fg__r8"], ["arc_easy"], target="gsm8k")


def test_leaderboard_shows_forgetting_section(runs: dict[str, Any]) -> None:
    from harness.leaderboard import render

    text = render(runs["out"])
    assert "# Leaderboard" in text and "## Forgetting" in text and "| r8 |" in text.split("## Forgetting\n")[1]
