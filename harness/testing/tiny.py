"""Tiny causal LMs and GSM8K-format data the project makes itself, for the demo and the tests.

No hub access is needed: the tokenizer is trained locally on the text the model will see,
and the model is built from a config with random weights.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Raj", "Eva", "Ben", "Zoe"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "coins", "cards", "shells"]


def word_problem(rng: random.Random) -> dict[str, str]:
    """One GSM8K-format row: question, and a worked answer ending in `#### N`."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(4)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if kind == 0:
        q = f"{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?"
        steps, n = f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.", a + b
    elif kind == 1:
        a, b = max(a, b) + 1, min(a, b)
        q = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        steps, n = f"{name} has {a} - {b} = <<{a}-{b}={a - b}>>{a - b} {item} left.", a - b
    elif kind == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} buys {a} boxes with {b} {item} in each box. How many {item} does {name} buy?"
        steps, n = f"{name} buys {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {item}.", a * b
    else:
        c = rng.randint(1, 9)
        q = f"{name} has {a} {item}, finds {b} more and then loses {c}. How many {item} does {name} have?"
        s = a + b
        steps = f"{name} has {a} + {b} = <<{a}+{b}={s}>>{s} {item}. Then {s} - {c} = <<{s}-{c}={s - c}>>{s - c}."
        n = s - c
    return {"question": q, "answer": f"{steps}\n#### {n}"}


def write_gsm8k_data(root: Path, n_train: int = 400, n_test: int = 60, seed: int = 0) -> Path:
    """Write root/gsm8k/{train,test}.jsonl in the official layout; returns root (a --data-dir)."""
    rng = random.Random(seed)
    out = root / "gsm8k"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with (out / f"{split}.jsonl").open("w") as f:
            for _ in range(n):
                f.write(json.dumps(word_problem(rng)) + "\n")
    return root


def train_tokenizer(texts: list[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained on `texts`, wrapped for transformers, with <|endoftext|> as eos/bos/pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def gpt2_tokenizer(bpe_dir: Path) -> Any:
    """The real GPT-2 BPE tokenizer from a directory with tokenizer.json (e.g. ../shared/data/gpt2-bpe/lora-vocab)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(bpe_dir / "tokenizer.json"), eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def build_causal_lm(out_dir: Path, tokenizer: Any, arch: str = "gpt2", d_model: int = 64, n_layer: int = 2,
                    n_head: int = 4, max_positions: int = 512, seed: int = 0) -> Path:
    """Save a randomly initialised GPT-2 or Llama-shaped model and its tokenizer to out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(seed)
    vocab = len(tokenizer)
    config: Any
    if arch == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_embd=d_model, n_layer=n_layer, n_head=n_head, n_positions=max_positions,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    elif arch == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_model * 2,
                             num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
                             max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                             tie_word_embeddings=False)
    else:
        raise ValueError(f"unknown arch {arch}")
    config.architectures = [("GPT2LMHeadModel" if arch == "gpt2" else "LlamaForCausalLM")]
    model = AutoModelForCausalLM.from_config(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def tiny_gsm8k_model(out_dir: Path, data_dir: Path, arch: str = "gpt2", **kw: Any) -> Path:
    """A tiny causal LM whose tokenizer was trained on the GSM8K-format rows under data_dir."""
    texts = []
    for split in ("train", "test"):
        p = data_dir / "gsm8k" / f"{split}.jsonl"
        if p.exists():
            for line in p.read_text().splitlines():
                r = json.loads(line)
                texts += [f"Question: {r['question']}\nAnswer: {r['answer']}\n\n"]
    return build_causal_lm(out_dir, train_tokenizer(texts), arch=arch, **kw)
