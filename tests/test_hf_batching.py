"""--batch-size auto and out-of-memory recovery on the hf backend, with real out-of-memory errors forced.

A forward hook raises torch's OutOfMemoryError whenever a batch is wider than the "memory" allows: the answers must
equal those of batch size 1 with nothing lost, and the sizes that fit are remembered per request kind and length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import harness_cli

from harness.backends.hf import HFBackend
from harness.errors import HarnessError
from harness.models.loading import ModelSpec
from harness.requests import Generate, LogLikelihood


def rows(data: Path, n: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (data / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]]


@pytest.fixture(scope="module")
def reqs(gsm8k_data: Path) -> dict[str, list[Any]]:
    docs = rows(gsm8k_data, 10)
    gen = [Generate(prompt=f"Question: {d['question']}\nAnswer:", stop=("\n\n",), max_new_tokens=12) for d in docs]
    ll = [LogLikelihood(context=f"Question: {d['question']}\nAnswer:", continuation=" " + d["answer"].split("####")[-1])
          for d in docs] + [LogLikelihood(context=f"Question: {d['question']}\nAnswer:", continuation=" 7") for d in docs]
    sampled = [replace(g, temperature=0.8, n=2, seed=5 + i) for i, g in enumerate(gen[:6])]
    return {"generate": gen, "loglikelihood": ll, "sampled": sampled}


class Memory:
    """A forward pre-hook that 'runs out of memory' on batches wider than `rows` (0: always)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.widest = 0
        self.ooms = 0

    def __call__(self, module: Any, args: Any, kwargs: Any) -> None:
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]
        if ids.shape[0] > self.rows:
            self.ooms += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (forced by the test)")
        self.widest = max(self.widest, ids.shape[0])


@pytest.fixture()
def session_with_memory(tiny_gpt2: Path) -> Iterator[Any]:
    opened: list[Any] = []

    def open_(rows: int | None, auto: bool = True) -> tuple[Any, Any, Memory | None]:
        s = HFBackend().open(ModelSpec(model=str(tiny_gpt2), batch_size=64 if auto else 1, auto_batch=auto))
        opened.append(s)
        m = s.model_for("base")
        mem = None
        if rows is not None:
            mem = Memory(rows)
            m.inner.model.register_forward_pre_hook(mem, with_kwargs=True)
        return s, m, mem

    yield open_
    for s in opened:
        s.close()


def answers(m: Any, reqs: dict[str, list[Any]]) -> dict[str, Any]:
    return {"generate": m.generate(reqs["generate"]), "loglikelihood": m.loglikelihood(reqs["loglikelihood"]),
            "sampled": m.generate(reqs["sampled"])}


def test_out_of_memory_halves_and_retries_without_changing_answers(session_with_memory: Any,
                                                                   reqs: dict[str, list[Any]]) -> None:
    _, one, _ = session_with_memory(None, auto=False)
    expected = {k: [getattr(one, "loglikelihood" if k == "loglikelihood" else "generate")([r])[0] for r in rs]
                for k, rs in reqs.items()}
    session, m, mem = session_with_memory(3)
    got = answers(m, reqs)
    assert mem.ooms > 0 and 0 < mem.widest <= 3
    assert got["generate"] == expected["generate"] and got["sampled"] == expected["sampled"]
    for (x, gx), (y, gy) in zip(got["loglikelihood"], expected["loglikelihood"]):
        assert abs(x - y) <= 1e-5 * max(1.0, abs(y)) and gx == gy
    limits = session.describe()["batch_limits"]  # requests per call (a prefix group or n samples are several rows)
    assert set(limits) >= {"generate/8", "loglikelihood/7"} and all(n < 10 for n in limits.values())
    # remembered: the same batches again run at the learnt size, with no new out-of-memory error
    before = mem.ooms
    assert m.generate(reqs["generate"]) == expected["generate"]
    assert mem.ooms == before


def test_out_of_memory_on_one_request_is_a_one_line_error(session_with_memory: Any, reqs: dict[str, list[Any]]) -> None:
    _, m, _ = session_with_memory(0)
    with pytest.raises(HarnessError, match="out of memory answering a single generate request") as e:
        m.generate(reqs["generate"][:4])
    assert "\n" not in str(e.value)


def test_batch_size_auto_on_the_command_line(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    p = harness_cli("run", "-m", str(tiny_gpt2), "-t", "gsm8k", "--data-dir", str(gsm8k_data), "--limit", "6",
                    "--max-new-tokens", "4", "--batch-size", "auto", "-o", str(out), "--run-name", "a", "-q")
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((out / "a" / "results.json").read_text())
    assert res["run"]["batch_size"] == "auto" and res["tasks"]["gsm8k"]["n"] == 6
