"""Moved to harness.testing.tiny (test and demo builders are not part of the core). Kept only while in-flight work
moves over; removed before release."""

from harness.testing.tiny import *  # noqa: F403
from harness.testing.tiny import build_causal_lm, gpt2_tokenizer, tiny_gsm8k_model, word_problem, write_gsm8k_data  # noqa: F401
