"""The sliced vocabulary projection (harness/models/vocab_head.py) gives bitwise the logits of the whole product.

At GPT-2's head shape (50,257 x 768, fp32) for the row counts decoding and multiple choice project, at one thread
and at the machine's default; then end to end on the tiny GPT-2 with slices small enough to cut its vocabulary:
greedy text, sampled text and log-likelihoods exactly those of the unsliced head.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness.backends.hf import HFBackend
from harness.models import vocab_head
from harness.models.loading import ModelSpec
from harness.requests import Generate, LogLikelihood


class _Head(nn.Module):
    def __init__(self, head: nn.Linear) -> None:
        super().__init__()
        self.head = head

    def get_output_embeddings(self) -> nn.Linear:
        return self.head


@pytest.mark.parametrize("threads", [1, 0])
def test_sliced_head_is_bitwise_equal_at_gpt2_shape(threads: int) -> None:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        head = nn.Linear(768, 50257, bias=False)
        whole = nn.Linear(768, 50257, bias=False)
        whole.weight = head.weight
        assert vocab_head.install(_Head(head))
        assert "forward" in vars(head) and "forward" not in vars(whole)
        with torch.no_grad():
            for shape in [(1, 768), (8, 768), (16, 1, 768), (3, 100, 768)]:
                x = torch.randn(*shape)
                got, want = head(x), whole(x)
                assert got.shape == want.shape and torch.equal(got, want), shape
    finally:
        torch.set_num_threads(before)


def test_what_is_not_sliced() -> None:
    assert not vocab_head.install(_Head(nn.Linear(64, 1000)))  # a small vocabulary fits the caches whole
    assert not vocab_head.install(_Head(nn.Linear(64, 50000).to(torch.bfloat16)))  # equality checked for fp32 only
    head = nn.Linear(64, 50000)
    assert vocab_head.install(_Head(head), slice_rows=4096)
    assert not vocab_head.install(_Head(head))  # already installed: not wrapped twice
    x = torch.randn(2, 64, requires_grad=True)
    head(x).sum().backward()  # training runs the plain product (and its gradients)
    assert x.grad is not None and torch.allclose(x.grad, head.weight.sum(0).expand(2, 64), atol=1e-4)


@pytest.fixture(scope="module")
def reqs(gsm8k_data: Path) -> list[Any]:
    docs = [json.loads(line) for line in (gsm8k_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:6]]
    gen = [Generate(prompt=f"Question: {d['question']}\nAnswer:", stop=("\n\n",), max_new_tokens=10) for d in docs]
    ll = [LogLikelihood(context=f"Question: {d['question']}\nAnswer:", continuation=" " + d["answer"].split("####")[-1])
          for d in docs]
    return [gen, [replace(g, temperature=0.9, n=2, seed=3 + i) for i, g in enumerate(gen[:3])], ll]


def _answers(tiny_gpt2: Path, reqs: list[Any]) -> tuple[list[Any], bool]:
    s = HFBackend().open(ModelSpec(model=str(tiny_gpt2), batch_size=4))
    try:
        m = s.model_for("base")
        sliced = "forward" in vars(m.inner.model.get_output_embeddings())
        return [m.generate(reqs[0]), m.generate(reqs[1]), m.loglikelihood(reqs[2])], sliced
    finally:
        s.close()


def test_sliced_head_changes_no_answer(tiny_gpt2: Path, reqs: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vocab_head, "MIN_VOCAB", 10**9)
    want, sliced = _answers(tiny_gpt2, reqs)
    assert not sliced
    monkeypatch.setattr(vocab_head, "MIN_VOCAB", 0)
    monkeypatch.setattr(vocab_head, "SLICE", 100)  # the tiny vocabulary cut into several slices
    got, sliced = _answers(tiny_gpt2, reqs)
    assert sliced
    assert got == want
