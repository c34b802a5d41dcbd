"""Causal language models: batched generation (left padding, per-row stops) and log-likelihoods.

Log-likelihoods follow lm-eval 0.4's tokenisation (context and continuation encoded together,
trailing context spaces moved to the continuation) so scores match it.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import torch

from harness.requests import Generate, LogLikelihood


class _StopOnStrings:
    """Per-row stopping: a row is done once its decoded continuation contains one of its stop strings."""

    def __init__(self, tokenizer: Any, stops: list[tuple[str, ...]], prompt_len: int, n: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops for _ in range(n)]
        self.prompt_len = prompt_len
        self.window = max((len(s) for row in stops for s in row), default=0) + 8

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i, stops in enumerate(self.stops):
            if not stops:
                continue
            tail = self.tokenizer.decode(input_ids[i, self.prompt_len:][-self.window:], skip_special_tokens=True)
            done[i] = any(s in tail for s in stops)
        return done


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = len(text)
    for s in stops:
        j = text.find(s)
        if j != -1:
            cut = min(cut, j)
    return text[:cut]


class CausalLM:
    """Answers generate and loglikelihood requests with a Hugging Face causal LM (optionally PEFT-wrapped)."""

    def __init__(self, model: Any, tokenizer: Any, identity: dict[str, Any], spec: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.batch_size = spec.batch_size
        self.device = spec.device
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_length = int(getattr(model.config, "max_position_embeddings", None)
                              or getattr(model.config, "n_positions", 2048))

    # --- prompts ------------------------------------------------------------------------
    def render(self, prompt: str | tuple[tuple[str, str], ...]) -> str:
        if isinstance(prompt, str):
            return prompt
        messages = [{"role": r, "content": c} for r, c in prompt]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # No template shipped: a plain transcript keeps chat-style tasks usable on base models.
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"

    # --- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, requests: list[Generate]) -> list[list[str]]:
        out: list[list[str] | None] = [None] * len(requests)

        def settings(i: int) -> tuple[Any, ...]:
            r = requests[i]
            return (r.max_new_tokens, r.temperature, r.top_p, r.n, r.num_beams, r.length_penalty,
                    r.no_repeat_ngram_size, r.seed if r.temperature > 0 else 0)

        order = sorted(range(len(requests)), key=settings)
        for key, group in groupby(order, key=settings):
            idx = list(group)
            if key[1] > 0:  # sampling: one prompt at a time so its seed alone fixes its samples
                for i in idx:
                    out[i] = self._generate_batch([requests[i]])[0]
            else:
                for i, texts in zip(idx, self._generate_batch([requests[i] for i in idx])):
                    out[i] = texts
        return [o or [] for o in out]

    def _generate_batch(self, reqs: list[Generate]) -> list[list[str]]:
        r0 = reqs[0]
        tok = self.tokenizer
        tok.padding_side = "left"
        prompts = [self.render(r.prompt) for r in reqs]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = enc["input_ids"].to(self.device)
        attn = enc["attention_mask"].to(self.device)
        budget = self.max_length - r0.max_new_tokens
        if input_ids.shape[1] > budget > 0:  # keep the end of over-long prompts
            input_ids, attn = input_ids[:, -budget:], attn[:, -budget:]
        prompt_len = input_ids.shape[1]
        sampling = r0.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": r0.max_new_tokens, "do_sample": sampling, "num_return_sequences": r0.n,
            "num_beams": r0.num_beams, "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
        }
        if sampling:
            kwargs.update(temperature=r0.temperature, top_p=r0.top_p)
            torch.manual_seed(r0.seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if r0.num_beams > 1:
            kwargs.update(length_penalty=r0.length_penalty, early_stopping=True)
        if r0.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = r0.no_repeat_ngram_size
        if any(r.stop for r in reqs) and r0.num_beams == 1:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [_StopOnStrings(tok, [r.stop for r in reqs], prompt_len, r0.n)])
        gen = self.model.generate(input_ids=input_ids, attention_mask=attn, **kwargs)
        texts = tok.batch_decode(gen[:, prompt_len:], skip_special_tokens=True)
        results: list[list[str]] = []
        for i, r in enumerate(reqs):
            results.append([cut_at_stop(t, r.stop) for t in texts[i * r0.n : (i + 1) * r0.n]])
        return results

    # --- log-likelihood -----------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        ctx = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        return ctx, whole[len(ctx):]

    def _prefix_token(self) -> int:
        tok = self.tokenizer
        for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id):
            if t is not None:
                return int(t)
        return 0

    @torch.no_grad()
    def loglikelihood(self, requests: list[LogLikelihood]) -> list[tuple[float, bool]]:
        """Score each (context, continuation); one padded forward per batch of full sequences.

        Right padding keeps every real position's logits exact under the causal mask.
        """
        seqs: list[tuple[list[int], int]] = []  # (input tokens, number of continuation tokens)
        for r in requests:
            if r.context == "":
                ctx, cont = [self._prefix_token()], self.tokenizer(r.continuation, add_special_tokens=False)["input_ids"]
            else:
                ctx, cont = self._encode_pair(r.context, r.continuation)
            full = (ctx + cont)[-(self.max_length + 1):]
            seqs.append((full, len(cont)))
        lengths = [len(s) - 1 for s, _ in seqs]
        width = max(lengths)
        pad = self.tokenizer.pad_token_id or 0
        inp = torch.full((len(seqs), width), pad, dtype=torch.long)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, _) in enumerate(seqs):
            inp[i, : len(s) - 1] = torch.tensor(s[:-1])
            attn[i, : len(s) - 1] = 1
        logits = self.model(input_ids=inp.to(self.device), attention_mask=attn.to(self.device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out: list[tuple[float, bool]] = []
        for i, (s, n_cont) in enumerate(seqs):
            end = len(s) - 1
            lp = logprobs[i, end - n_cont : end]
            target = torch.tensor(s[-n_cont:], device=lp.device)
            score = lp.gather(-1, target[:, None]).sum().item()
            greedy = bool((lp.argmax(-1) == target).all().item())
            out.append((float(score), greedy))
        return out
