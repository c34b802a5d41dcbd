"""Model loading: adapters in turn on one base, shape checks, added tokens, 4-bit, batch-size invariance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.models.loading import ModelSpec, iter_variants, model_key
from harness.requests import Generate, LogLikelihood


def make_adapter(base_dir: Path, out: Path, seed: int, target: list[str], add_tokens: list[str] | None = None) -> Path:
    """A LoRA adapter with non-zero weights (so it changes outputs), saved as PEFT does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    modules_to_save = None
    if add_tokens:
        tok.add_tokens(add_tokens)
        model.resize_token_embeddings(len(tok))
        modules_to_save = ["wte", "lm_head"] if model.config.model_type == "gpt2" else ["embed_tokens", "lm_head"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=target, modules_to_save=modules_to_save))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    if add_tokens:
        tok.save_pretrained(out)
    return out


def greedy(model, prompts: list[str], bs: int, n_tokens: int = 12) -> list[str]:
    model.batch_size = bs
    reqs = [Generate(prompt=p, stop=("\n\n",), max_new_tokens=n_tokens) for p in prompts]
    out = []
    for i in range(0, len(reqs), bs):
        out += [o[0] for o in model.generate(reqs[i : i + bs])]
    return out


PROMPTS = ["Question: Tom has 3 apples.\nAnswer:", "Question: Ana has 12 books and gives away 5. How many are left?\nAnswer:",
           "Question: Li", "Question: Zoe buys 4 boxes with 9 coins in each box. How many coins does Zoe buy?\nAnswer:",
           "Q", "Question: Eva has 20 shells, finds 3 more and then loses 7.\nAnswer: Eva has",
           "Answer: 5 + 6 =", "Question: Raj has 2 cards and gets 17 more. How many cards does Raj have now?\nAnswer:"]


@pytest.mark.parametrize("arch", ["tiny_gpt2", "tiny_llama"])
def test_greedy_generation_is_batch_size_invariant(arch: str, request: pytest.FixtureRequest) -> None:
    base = request.getfixturevalue(arch)
    variant = next(iter_variants(ModelSpec(model=str(base), batch_size=8)))
    one = greedy(variant.model, PROMPTS, bs=1)
    eight = greedy(variant.model, PROMPTS, bs=8)
    assert one == eight
    assert any(o.strip() for o in one)  # the model did produce text


def test_loglikelihood_is_batch_invariant_and_consistent(tiny_gpt2: Path) -> None:
    m = next(iter_variants(ModelSpec(model=str(tiny_gpt2)))).model
    reqs = [LogLikelihood("Question: Tom has 3 apples.\nAnswer:", c) for c in (" 3", " 4 apples", " Tom")]
    reqs.append(LogLikelihood("", "Question"))
    together = m.loglikelihood(reqs)
    alone = [m.loglikelihood([r])[0] for r in reqs]
    for (a, ga), (b, gb) in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb
    # direct check of one score against a plain forward pass
    tok = m.tokenizer
    ctx = tok("Question: Tom has 3 apples.\nAnswer:")["input_ids"]
    whole = tok("Question: Tom has 3 apples.\nAnswer: 3")["input_ids"]
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = m.model(torch.tensor([whole])).logits[0].log_softmax(-1)
    expected = sum(logits[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
    assert together[0][0] == pytest.approx(expected, abs=1e-5)


def test_adapters_applied_in_turn_on_one_base(tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    a1 = make_adapter(tiny_gpt2, tmp_path / "r4-a", seed=1, target=["c_attn"])
    a2 = make_adapter(tiny_gpt2, tmp_path / "r4-b", seed=2, target=["c_attn", "c_proj"])
    calls = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def counting(*args, **kwargs):  # the real loader, counted
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", counting)
    spec = ModelSpec(model=str(tiny_gpt2), adapters=[str(a1), str(a2)], with_base=True)
    outs, keys = {}, set()
    req = LogLikelihood("Question: Tom has 3 apples.\nAnswer:", " 3")
    for v in iter_variants(spec):
        outs[v.label] = v.model.loglikelihood([req])[0][0]
        keys.add(model_key(v.identity))
    assert len(calls) == 1  # the base was loaded once
    assert list(outs) == ["base", "r4-a", "r4-b"]
    assert len(keys) == 3  # three identities, three store keys
    assert len({round(x, 4) for x in outs.values()}) == 3  # each adapter changed the scores
    # the same adapter loaded alone gives the same score as in turn (the previous adapter is gone)
    alone = list(iter_variants(ModelSpec(model=str(tiny_gpt2), adapters=[str(a2)])))[0]
    assert alone.model.loglikelihood([req])[0][0] == pytest.approx(outs["r4-b"], abs=1e-5)


def test_adapter_of_another_base_is_a_one_line_error(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path, cli) -> None:
    from harness.testing.tiny import build_causal_lm, train_tokenizer

    other = build_causal_lm(tmp_path / "wide", train_tokenizer(["some text for a tokenizer"] * 10), d_model=96)
    adapter = make_adapter(other, tmp_path / "wide-adapter", seed=0, target=["c_attn"])
    with pytest.raises(HarnessError) as e:
        list(iter_variants(ModelSpec(model=str(tiny_gpt2), adapters=[str(adapter)])))
    msg = str(e.value)
    assert str(adapter) in msg and str(tiny_gpt2) in msg and "\n" not in msg
    proc = cli("run", "-m", str(tiny_gpt2), "--adapter", str(adapter), "-t", "gsm8k", "--data-dir", str(gsm8k_data),
               "--limit", "1", "-o", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not fit base" in proc.stderr


def test_adapter_with_added_tokens_resizes_embeddings(tiny_gpt2: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_gpt2, tmp_path / "added", seed=3, target=["c_attn"], add_tokens=["<calc>", "</calc>"])
    v = list(iter_variants(ModelSpec(model=str(tiny_gpt2), adapters=[str(adapter)])))[0]
    n = len(v.model.tokenizer)
    assert v.model.model.get_input_embeddings().weight.shape[0] == n
    ids = v.model.tokenizer("<calc>")["input_ids"]
    assert len(ids) == 1 and ids[0] >= n - 2
    score, _ = v.model.loglikelihood([LogLikelihood("Question: 2+2", " <calc>")])[0]
    assert score < 0


def test_4bit_loading_disables_avx512_repack_and_answers(tiny_llama: Path) -> None:
    import bitsandbytes as bnb

    spec = ModelSpec(model=str(tiny_llama), load_in_4bit=True, batch_size=4)
    v = next(iter_variants(spec))
    layers = [m for m in v.model.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
    assert v.identity["quantization"] == "nf4-dq"
    out = v.model.generate([Generate(prompt="Question: Tom has 3 apples.\nAnswer:", max_new_tokens=5)])
    assert len(out) == 1 and isinstance(out[0][0], str)
    fp32 = next(iter_variants(ModelSpec(model=str(tiny_llama))))
    assert model_key(fp32.identity) != model_key(v.identity)


def test_local_base_hash_changes_with_weights(tiny_gpt2: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_gpt2, copy)
    a = next(iter_variants(ModelSpec(model=str(copy)))).identity
    cfg = json.loads((copy / "config.json").read_text())
    cfg["layer_norm_epsilon"] = 1e-3
    (copy / "config.json").write_text(json.dumps(cfg))
    b = next(iter_variants(ModelSpec(model=str(copy)))).identity
    assert a["base_hash"] != b["base_hash"]
