"""The backend seam: registry, option checking, missing extras, store keys and what results.json records."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends import backend_names, get_backend
from harness.backends.base import Backend, BackendOption
from harness.errors import HarnessError
from harness.models.loading import model_key
from harness.results import read_results


class NeedsEngine(Backend):
    name = "needs-engine"
    answers = ("generate",)
    extra = "engine"
    requires = ("harness_no_such_engine_module",)
    options = {"gpu_memory_utilization": BackendOption(float, "share of GPU memory", 0.9),
               "enforce_eager": BackendOption(bool, "no CUDA graphs")}


def test_registry_lists_hf_and_checks_names() -> None:
    assert "hf" in backend_names()
    assert get_backend("hf").answers == ("generate", "loglikelihood", "classify")
    with pytest.raises(HarnessError, match="--backend nope: unknown backend"):
        get_backend("nope")


def test_missing_extra_names_the_extra() -> None:
    assert NeedsEngine.missing() == ["harness_no_such_engine_module"]
    with pytest.raises(HarnessError, match=r"needs harness_no_such_engine_module.*pip install 'harness\[engine\]'"):
        NeedsEngine.check_installed()


def test_backend_options_are_typed_and_checked() -> None:
    assert NeedsEngine.parse_options({"enforce_eager": "true"}) == {"gpu_memory_utilization": 0.9, "enforce_eager": True}
    assert NeedsEngine.parse_options({"gpu_memory_utilization": "0.2"})["gpu_memory_utilization"] == 0.2
    with pytest.raises(HarnessError, match="--backend-option gpu_memory_utilization=lots: expected float"):
        NeedsEngine.parse_options({"gpu_memory_utilization": "lots"})
    with pytest.raises(HarnessError, match="--backend-option enforce_eager=maybe"):
        NeedsEngine.parse_options({"enforce_eager": "maybe"})
    with pytest.raises(HarnessError, match="no such option"):
        NeedsEngine.parse_options({"nope": "1"})


def test_store_key_includes_the_backend() -> None:
    ident = {"base": "m", "dtype": "float32", "quantization": None}
    assert model_key({**ident, "backend": "hf"}) != model_key({**ident, "backend": "vllm"})


def test_results_record_the_backend(cli, tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = cli("backends", check=True)
    assert "hf" in proc.stdout and "loglikelihood" in proc.stdout
    cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "1", "--max-new-tokens",
        "2", "--backend", "hf", "-o", str(out), "--run-name", "b", "-q", check=True)
    res = read_results(out / "b" / "results.json")
    assert res["backend"]["name"] == "hf" and "transformers" in res["backend"]
    assert res["backend"]["options"] == {"mix_adapters": True, "continuous_batching": True}
    assert res["model"]["backend"] == "hf"
