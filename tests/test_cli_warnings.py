"""The entry point hides only the library chatter it knows is noise: transformers' other warnings still reach the user."""

from __future__ import annotations

import logging

import pytest
from conftest import run_main


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_main_keeps_transformers_warnings_except_known_noise(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    from harness.cli import HF_NOISE

    level = hf_logging.get_verbosity()
    keep = _Keep()
    root = hf_logging.get_logger()  # the "transformers" logger, where every transformers record is handled
    try:
        hf_logging.set_verbosity_warning()
        for _ in range(2):  # main() twice in one process: one filter still
            code, out, _ = run_main(monkeypatch, capsys, "--help")
            assert code == 0 and "Usage" in out
        assert hf_logging.get_verbosity() <= logging.WARNING  # not silenced for the whole process
        root.addHandler(keep)
        noisy = hf_logging.get_logger("transformers.utils.generic")
        assert sum(type(f).__name__ == "HfNoise" for f in noisy.filters) == 1 and set(HF_NOISE) == {noisy.name}
        noisy.warning("`past_key_values`/`cache_params` are deprecated. Use `cache` instead.")  # known noise
        noisy.warning("Something else went wrong in generic: a real problem")  # same logger, another message
        hf_logging.get_logger("transformers.modeling_utils").warning("Some weights were not initialized: a real problem")
        assert keep.messages == ["Something else went wrong in generic: a real problem",
                                 "Some weights were not initialized: a real problem"]
    finally:
        root.removeHandler(keep)
        hf_logging.set_verbosity(level)
