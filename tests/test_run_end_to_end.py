"""`harness run` end to end through the CLI: real GSM8K rows, tiny models, results, leaderboard, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results import read_results


def test_run_on_real_gsm8k_rows(cli, shared_data: Path, tiny_gpt2: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = cli("run", "--model", str(tiny_gpt2), "--tasks", "gsm8k", "--data-dir", str(shared_data),
               "--limit", "6", "--max-new-tokens", "16", "--num-fewshot", "2", "-o", str(out), "--run-name", "real",
               "--quiet", check=True)
    assert "gsm8k (n=6)" in proc.stdout
    res = read_results(out / "real" / "results.json")
    task = res["tasks"]["gsm8k"]
    assert res["schema_version"].startswith("1.")
    assert res["model"]["base_hash"] and res["model"]["dtype"] == "float32"
    assert task["n"] == 6 and task["num_fewshot"] == 2
    assert task["data"]["source"].endswith("gsm8k/test.jsonl")
    assert set(task["metrics"]) == {"pass@1_strict", "pass@1_answer_is", "pass@1_short_answer", "pass@1_flexible"}
    for m in task["metrics"].values():
        assert 0.0 <= m["value"] <= 1.0 and m["stderr"] is not None
    samples = [json.loads(x) for x in (out / "real" / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    first = samples[0]
    assert first["target"] == "18"  # Janet's ducks
    assert first["prompt"].count("Question:") == 3  # two exemplars from train + the question
    assert set(first) >= {"doc_id", "prompt", "output", "extracted", "target", "metrics"}
    # the per-sample metric agrees with the extracted answer
    for s in samples:
        assert s["metrics"]["pass@1_flexible"] == float(s["extracted"]["flexible"] == s["target"])


def test_leaderboard_formats_and_delta(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "4",
        "--max-new-tokens", "8", "-o", str(out), "--run-name", "lb", "-q", check=True)
    md = cli("leaderboard", str(out), "-o", str(tmp_path / "LB.md"), check=True)
    assert md.returncode == 0
    text = (tmp_path / "LB.md").read_text()
    assert "| model |" in text and "gsm8k/pass@1_strict (%)" in text and "(base)" in text
    js = json.loads(cli("leaderboard", str(out), "--format", "json", check=True).stdout)
    assert js["rows"][0]["name"].endswith("(base)")
    csv_text = cli("leaderboard", str(out), "--format", "csv", check=True).stdout
    assert csv_text.splitlines()[0].startswith("model,gsm8k/pass@1_strict")


def test_sampling_pass_at_k_and_majority(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "3", "--samples", "4",
        "--temperature", "0.9", "--max-new-tokens", "8", "-o", str(out), "--run-name", "s", "-q", check=True)
    metrics = read_results(out / "s" / "results.json")["tasks"]["gsm8k"]["metrics"]
    assert {"pass@2_flexible", "pass@4_flexible", "maj@4_flexible"} <= set(metrics)
    samples = [json.loads(x) for x in (out / "s" / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    assert all(len(s["output"]) == 4 for s in samples)
    # pass@k is monotone in k for every row
    for s in samples:
        m = s["metrics"]
        assert m["pass@1_flexible"] <= m["pass@2_flexible"] <= m["pass@4_flexible"]


def test_user_errors_are_one_line_exit_2(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    cases = [
        (["run", "-m", str(tiny_gpt2), "-t", "nosuchtask"], "unknown task 'nosuchtask'"),
        (["run", "-m", str(tmp_path / "missing"), "-t", "gsm8k", "--data-dir", str(gsm8k_data)], "--model"),
        (["run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(tmp_path)], "no gsm8k/test.jsonl"),
        (["run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--limit", "0"], "--limit"),
        (["run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--adapter", str(tmp_path)], "no adapter_config.json"),
        (["leaderboard", str(tmp_path / "nothing")], "no such file"),
    ]
    for args, needle in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error:"), (args, proc.stderr)


def test_bad_row_names_file_and_row(cli, tiny_gpt2: Path, tmp_path: Path) -> None:
    d = tmp_path / "data" / "gsm8k"
    d.mkdir(parents=True)
    (d / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"question": "q"}) + "\n")
    proc = cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(tmp_path / "data"), "-o", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "test.jsonl row 2: missing column answer" in proc.stderr
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("results.json"))


def test_offline_hub_error_names_dataset_and_local_layout(cli, tiny_gpt2: Path, tmp_path: Path) -> None:
    proc = cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "-o", str(tmp_path / "r"),
               env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "openai/gsm8k" in line and "--data-dir" in line and "gsm8k/test.jsonl" in line


def test_tasks_lists_gsm8k(cli) -> None:
    proc = cli("tasks", check=True)
    assert "gsm8k" in proc.stdout and "pass@1_strict" in proc.stdout and "generate" in proc.stdout


def test_two_adapters_with_base_and_leaderboard_deltas(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    from test_models_adapters import make_adapter

    a8 = make_adapter(tiny_gpt2, tmp_path / "ckpt-r8", seed=5, target=["c_attn"])
    a16 = make_adapter(tiny_gpt2, tmp_path / "ckpt-r16", seed=6, target=["c_attn", "c_fc"])
    out = tmp_path / "results"
    cli("run", "-m", str(tiny_gpt2), "--adapter", str(a8), "--adapter", str(a16), "--with-base", "-t", "gsm8k",
        "--data-dir", str(gsm8k_data), "--limit", "3", "--num-fewshot", "1", "--max-new-tokens", "8", "-o", str(out),
        "--run-name", "multi", "-q", check=True)
    dirs = sorted(p.parent.name for p in out.rglob("results.json"))
    assert dirs == ["multi__base", "multi__ckpt-r16", "multi__ckpt-r8"]
    r8 = json.loads((out / "multi__ckpt-r8" / "results.json").read_text())
    assert r8["model"]["adapter"] == "ckpt-r8" and len(r8["model"]["adapter_hash"]) == 16
    board = json.loads(cli("leaderboard", str(out), "--format", "json", check=True).stdout)
    names = [r["name"] for r in board["rows"]]
    assert names[0].endswith("(base)") and len(names) == 3
    base_cells = board["rows"][0]["cells"]
    for row in board["rows"][1:]:
        for col, cell in row["cells"].items():
            assert cell["delta"] == pytest.approx(cell["value"] - base_cells[col]["value"])


def test_chat_template_prompts(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    import shutil

    chat = tmp_path / "chat-model"
    shutil.copytree(tiny_gpt2, chat)
    cfg_path = chat / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                            "{% if add_generation_prompt %}<assistant>{% endif %}")
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path / "results"
    cli("run", "-m", str(chat), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "2", "--num-fewshot", "1",
        "--chat-template", "--max-new-tokens", "6", "-o", str(out), "--run-name", "chat", "-q", check=True)
    s = json.loads((out / "chat" / "samples" / "gsm8k.jsonl").read_text().splitlines()[0])
    roles = [m[0] for m in s["prompt"]]
    assert roles == ["user", "assistant", "user"]
    assert s["prompt"][1][1].rstrip().split("\n")[-1].startswith("####")
    from harness.models.loading import ModelSpec, iter_variants

    model = next(iter_variants(ModelSpec(model=str(chat)))).model
    rendered = model.render(tuple(tuple(m) for m in s["prompt"]))
    assert rendered.startswith("<user>Solve the math problem") and rendered.endswith("<assistant>")
