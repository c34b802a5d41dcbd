"""The hf backend's speed paths against its one-at-a-time path, on real GSM8K, ARC-Easy and WinoGrande rows.

Mixed-adapter batches (every variant's rows in one forward over one base, PEFT's adapter_names) must give the same
greedy text and log-likelihoods within 1e-5 (relative) as answering each variant alone; adapters PEFT cannot mix fall back,
saying why once. Batched sampling must keep a prompt's samples a function of its seed alone.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import harness_cli

from harness.backends.hf import HFBackend
from harness.models.loading import ModelSpec
from harness.testing.lora import random_lora, sharp_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, gpt2_bpe: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-mixed")
    base = sharp_llama(root / "base", gpt2_bpe)
    gpt2_bpe.save_pretrained(root / "a3")  # a trained checkpoint ships the base's tokenizer: still mixable
    return {"base": base, "a1": random_lora(base, root / "a1", 8, 1),
            "a2": random_lora(base, root / "a2", 4, 2, ["q_proj", "v_proj"]), "a3": random_lora(base, root / "a3", 16, 3)}


def task_requests(name: str, data: Path, n: int, **cfg: Any) -> list[Any]:
    from harness.registry import make_tasks
    from harness.task import CAUSAL, TaskConfig

    [task] = make_tasks(name, TaskConfig(data_dir=data, **cfg))
    return [r for d in task.docs()[:n] for r in task.requests(d, CAUSAL)]


@pytest.fixture(scope="module")
def reqs(shared_data: Path) -> dict[str, list[Any]]:
    gen = task_requests("gsm8k", shared_data, 6, max_new_tokens=24)
    return {"generate": gen + [replace(gen[0], stop=("\n",)), replace(gen[1], max_new_tokens=8)],
            "loglikelihood": task_requests("arc_easy", shared_data, 5) + task_requests("winogrande", shared_data, 5)}


def spec(models: dict[str, Path], mix: bool, **kw: Any) -> ModelSpec:
    options = {"mix_adapters": mix, **kw.pop("options", {})}
    return ModelSpec(model=str(models["base"]), adapters=[str(models[a]) for a in ("a1", "a2", "a3")], with_base=True,
                     batch_size=kw.pop("batch_size", 8), backend_options=options, **kw)


def one_at_a_time(models: dict[str, Path], reqs: dict[str, list[Any]], **kw: Any) -> dict[str, dict[str, Any]]:
    session = HFBackend().open(spec(models, False, **kw))
    assert not session.mixes_variants
    try:
        return {v.label: {k: getattr(session.model_for(v.label), k)(r) for k, r in reqs.items()}
                for v in session.variants}
    finally:
        session.close()


def mixed(models: dict[str, Path], reqs: dict[str, list[Any]], **kw: Any) -> dict[str, dict[str, Any]]:
    """Every variant's requests interleaved in the same batches, as run_mixed sends them."""
    session = HFBackend().open(spec(models, True, **kw))
    assert session.mixes_variants and session.describe()["mixed_batches"] is True
    labels = [v.label for v in session.variants]
    out: dict[str, dict[str, Any]] = {label: {} for label in labels}
    try:
        for kind, rs in reqs.items():
            items = [(label, r) for r in rs for label in labels]
            answers = session.answer(kind, items)
            for label in labels:
                out[label][kind] = [a for (lab, _), a in zip(items, answers) if lab == label]
    finally:
        session.close()
    return out


def assert_same(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for label in a:
        assert a[label]["generate"] == b[label]["generate"], label
        for (x, gx), (y, gy) in zip(a[label]["loglikelihood"], b[label]["loglikelihood"]):
            # 1e-5 of the value: sums over ~100 tokens differ in the last fp32 bits between differently shaped batches
            assert abs(x - y) <= 1e-5 * max(1.0, abs(y)) and gx == gy, (label, x, y)


def test_mixed_batches_equal_one_adapter_at_a_time(models: dict[str, Path], reqs: dict[str, list[Any]]) -> None:
    alone = one_at_a_time(models, reqs)
    assert_same(mixed(models, reqs), alone)
    # the adapters matter, so equality above is not the base's answers four times over
    assert len({json.dumps(alone[v]["generate"]) for v in alone}) == 4
    assert len({round(alone[v]["loglikelihood"][0][0], 4) for v in alone}) == 4


def test_mixed_batches_on_a_4bit_base(models: dict[str, Path], reqs: dict[str, list[Any]]) -> None:
    small = {"generate": reqs["generate"][:3], "loglikelihood": reqs["loglikelihood"][:8]}
    assert_same(mixed(models, small, load_in_4bit=True), one_at_a_time(models, small, load_in_4bit=True))


def test_dora_falls_back_and_says_so_once(models: dict[str, Path], reqs: dict[str, list[Any]], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    dora = random_lora(models["base"], tmp_path / "dora", 4, 7, ["q_proj", "v_proj"], use_dora=True)
    s = ModelSpec(model=str(models["base"]), adapters=[str(models["a1"]), str(dora)], with_base=True, batch_size=8)
    session = HFBackend().open(s)
    try:
        assert not session.mixes_variants
        assert "DoRA" in session.describe()["unmixed_because"]
        for v in session.variants:
            session.model_for(v.label).generate(reqs["generate"][:2])
    finally:
        session.close()
    err = capsys.readouterr().err
    assert err.count("one at a time") == 1 and str(dora) in err


def test_samples_depend_on_the_seed_alone(models: dict[str, Path], reqs: dict[str, list[Any]]) -> None:
    """A prompt's samples are the same alone, among batch-mates, at any batch size, and mixed with other variants."""
    prompts = [replace(r, temperature=0.9, top_p=0.95, n=3, seed=11 + i) for i, r in enumerate(reqs["generate"][:5])]
    session = HFBackend().open(spec(models, True, batch_size=4))
    try:
        m = session.model_for("base")
        alone = [m.generate([p])[0] for p in prompts]
        assert m.generate(prompts) == alone
        assert m.generate(prompts[::-1]) == alone[::-1]
        together = session.answer("generate", [(label, p) for p in prompts for label in ("base", "a1")])
        assert together[::2] == alone
        reseeded = m.generate([replace(p, seed=p.seed + 100) for p in prompts])
    finally:
        session.close()
    assert all(len(set(s)) > 1 for s in alone)  # three draws of one prompt are not one draw thrice
    assert reseeded != alone


def test_shared_prefix_is_computed_once_with_the_same_outputs(models: dict[str, Path], shared_data: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Few-shot prompts with the same exemplars: the exemplars' KV cache is computed once per batch (per adapter)
    and the greedy text is the same as running every prompt whole; also in a batch mixing adapters."""
    import harness.models.causal as causal

    train = [json.loads(x) for x in (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[:1]]
    shots = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in train)
    gen = task_requests("gsm8k", shared_data, 6, max_new_tokens=16)
    prompts = [replace(r, prompt=shots + str(r.prompt)) for r in gen]
    sampled = [replace(r, temperature=0.8, seed=3) for r in prompts[:3]]
    calls: list[int] = []
    original = causal.CausalLM._prefix_cache

    def spy(self: Any, prefix: list[int], adapters: Any, n_rows: int) -> Any:
        calls.append(len(prefix))
        return original(self, prefix, adapters, n_rows)

    monkeypatch.setattr(causal.CausalLM, "_prefix_cache", spy)
    session = HFBackend().open(spec(models, True))
    try:
        items = [(label, r) for r in prompts + sampled for label in ("base", "a1", "a3")]
        shared = session.answer("generate", items)
        assert calls and min(calls) > 50  # the exemplars, in tokens
        monkeypatch.setattr(causal, "SHARED_PREFIX_MIN", 10**9)
        n_calls = len(calls)
        whole = session.answer("generate", items)
        assert len(calls) == n_calls
    finally:
        session.close()
    assert shared == whole


def test_continuous_batching_equals_static_batches(models: dict[str, Path], reqs: dict[str, list[Any]]) -> None:
    """Rows that stop early (stop strings cut from the base's own outputs) free their slots for the next prompts:
    the text is what static batches give, greedy and sampled, in batches mixing adapters, with 3 slots for 20 rows."""
    gen = reqs["generate"][:6]
    static = HFBackend().open(spec(models, True, options={"continuous_batching": False}))
    try:
        base = static.answer("generate", [("base", r) for r in gen])
        early = [replace(r, stop=(*r.stop, t[len(t) // 4: len(t) // 4 + 3])) for r, [t] in zip(gen, base) if len(t) > 8]
        sampled = [replace(r, temperature=0.9, n=2, seed=20 + i) for i, r in enumerate(gen[:4])]
        items = [(label, r) for r in early + sampled + gen for label in ("base", "a2")]
        expected = static.answer("generate", items)
    finally:
        static.close()
    assert len({len(t) for [t, *_] in expected}) > 3  # the rows do end at different lengths
    cont = HFBackend().open(spec(models, True, batch_size=3))
    try:
        assert cont.answer("generate", items) == expected
    finally:
        cont.close()


def test_run_cli_mixed_equals_unmixed(models: dict[str, Path], shared_data: Path, tmp_path: Path) -> None:
    """`harness run` with three adapters and the base: the same results.json metrics and samples either way."""
    common = ["run", "--model", str(models["base"]), "--with-base", "--tasks", "gsm8k,arc_easy", "--limit", "4",
              "--data-dir", str(shared_data), "--max-new-tokens", "16", "--quiet"]
    for a in ("a1", "a2", "a3"):
        common += ["--adapter", str(models[a])]
    for name, mix in (("mixed", "true"), ("alone", "false")):
        p = harness_cli(*common, "-o", str(tmp_path / name), "--backend-option", f"mix_adapters={mix}")
        assert p.returncode == 0, p.stderr[-2000:]
    for variant in ("base", "a1", "a2", "a3"):
        dirs = [next((tmp_path / name).glob(f"*__{variant}")) for name in ("mixed", "alone")]
        got = [json.loads((d / "results.json").read_text()) for d in dirs]
        assert got[0]["backend"]["mixed_batches"] is True and got[1]["backend"]["mixed_batches"] is False
        for task in ("gsm8k", "arc_easy"):
            assert got[0]["tasks"][task]["metrics"] == got[1]["tasks"][task]["metrics"], (variant, task)
        assert (dirs[0] / "samples" / "gsm8k.jsonl").read_text() == (dirs[1] / "samples" / "gsm8k.jsonl").read_text()
