"""Shared fixtures: the real data in ../shared/data (skipped where absent) and tiny models built from configs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: present in CI, absent in a user's fresh clone (tests using it skip there)."""
    if not (SHARED / "MANIFEST.json").exists():
        pytest.skip(f"real evaluation data not found at {SHARED} (CI puts the real splits beside the repo as ../shared/data)")
    return SHARED


@pytest.fixture(scope="session")
def gsm8k_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-dir with the project's own GSM8K-format rows."""
    from harness.testing.tiny import write_gsm8k_data

    return write_gsm8k_data(tmp_path_factory.mktemp("data"), n_train=200, n_test=40)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, gsm8k_data: Path) -> Path:
    """A random tiny GPT-2 with a tokenizer trained on the GSM8K-format rows."""
    from harness.testing.tiny import tiny_gsm8k_model

    return tiny_gsm8k_model(tmp_path_factory.mktemp("tiny-gpt2"), gsm8k_data, arch="gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, gsm8k_data: Path) -> Path:
    from harness.testing.tiny import tiny_gsm8k_model

    return tiny_gsm8k_model(tmp_path_factory.mktemp("tiny-llama"), gsm8k_data, arch="llama")


@pytest.fixture(scope="session")
def gpt2_bpe(shared_data: Path):  # noqa: ANN201 - a PreTrainedTokenizerFast
    """The real GPT-2 BPE tokenizer from ../shared/data/gpt2-bpe."""
    from harness.testing.tiny import gpt2_tokenizer

    return gpt2_tokenizer(shared_data / "gpt2-bpe" / "lora-vocab")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's in-process models: two OpenMP threads fighting an engine's (or each other's)
    for two busy cores slow transformers' generate ten-fold."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def harness_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `harness ARGS` in a subprocess (the real console entry point) and capture its output."""
    import sys

    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture()
def cli():  # noqa: ANN201
    """The harness_cli runner as a fixture."""
    return harness_cli


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `harness ARGS` in this process (faster than a subprocess): (exit code, stdout, stderr)."""
    import sys

    from harness.cli import main

    monkeypatch.setattr(sys, "argv", ["harness", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
