"""More bad inputs (beside tests/test_bad_inputs.py's table): a truncated ADAPTER safetensors, for run and generate:
exit 2, one error line naming the file, no traceback, nothing new or half-written on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_main


@pytest.fixture(scope="module")
def truncated_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    """A real LoRA adapter of the tiny model whose adapter_model.safetensors was cut in half (a broken download)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gpt2),
                          LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapters") / "truncated-adapter"
    peft.save_pretrained(out)
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return out


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("command", ["run", "generate"])
def test_truncated_adapter_is_one_line_naming_the_file(command: str, truncated_adapter: Path, tiny_gpt2: Path,
                                                       gsm8k_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    adapter = ws / "adapter"
    shutil.copytree(truncated_adapter, adapter)
    (ws / "q.jsonl").write_text(json.dumps({"question_id": 1, "turns": ["Hi?"]}) + "\n")
    (ws / "out").mkdir()
    monkeypatch.chdir(ws)
    args = {"run": ["run", "-m", str(tiny_gpt2), "-a", str(adapter), "-t", "gsm8k", "--data-dir", str(gsm8k_data),
                    "--limit", "1", "--max-new-tokens", "2", "-o", str(ws / "out"), "-q"],
            "generate": ["generate", "-m", str(tiny_gpt2), "-a", str(adapter), "--questions", str(ws / "q.jsonl"),
                         "-o", str(ws / "out"), "--max-new-tokens", "2", "-q"]}[command]
    before = _snapshot(ws)
    code, out, err = run_main(monkeypatch, capsys, *args)
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:")]
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err + out and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert str(adapter / "adapter_model.safetensors") in lines[0] or (
        "adapter_model.safetensors" in lines[0] and str(adapter) in lines[0]), lines[0]
    assert _snapshot(ws) == before, "the failed command wrote or changed files"
