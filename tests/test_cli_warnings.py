"""The entry point hides only the library chatter it knows is noise: transformers' other warnings still reach the user."""

from __future__ import annotations

import io
import logging

import pytest
from conftest import run_main


def test_main_keeps_transformers_warnings_except_known_noise(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    try:
        code, out, _ = run_main(monkeypatch, capsys, "--help")
        assert code == 0 and "Usage" in out
        assert hf_logging.get_verbosity() <= logging.WARNING  # not silenced for the whole process
        code, _, _ = run_main(monkeypatch, capsys, "--help")  # main() again in one process: still one filter
        handlers = hf_logging.get_logger().handlers
        assert handlers and all(sum(type(f).__name__ == "HfNoise" for f in h.filters) == 1 for h in handlers)
        streams = [h.stream for h in handlers if isinstance(h, logging.StreamHandler)]
        shown = io.StringIO()
        for h in handlers:
            if isinstance(h, logging.StreamHandler):
                h.setStream(shown)
        try:
            log = hf_logging.get_logger("transformers.some_module")
            log.warning("Some weights of the model checkpoint were not used: a real problem")
            log.warning("`past_key_values`/`cache_params` are deprecated. Use `cache` instead.")
            log.warning("Setting `pad_token_id` to `eos_token_id`:0 for open-end generation.")
        finally:
            for h, stream in zip([h for h in handlers if isinstance(h, logging.StreamHandler)], streams):
                h.setStream(stream)
        assert [x.removeprefix("[transformers] ") for x in shown.getvalue().splitlines()] == [
            "Some weights of the model checkpoint were not used: a real problem"]
    finally:
        hf_logging.set_verbosity(level)
