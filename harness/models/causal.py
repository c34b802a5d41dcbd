"""Causal language models: batched generation (left padding, per-row stops) and log-likelihoods.

Log-likelihoods follow lm-eval 0.4's tokenisation (context and continuation encoded together,
trailing context spaces moved to the continuation) so scores match it; a prefix shared by
several requests in a batch (a question and its answer choices) is run through the model once.
"""

from __future__ import annotations

import copy
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


MIN_SHARED = 4  # tokens: a shorter common prefix (e.g. "Question:") is not worth a second forward
FORWARD_OVERHEAD = 16  # a model call costs about as much as this many tokens (reading every weight once; measured on CPU)


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
                              or getattr(model.config, "n_positions", None) or 2048)

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
    def _encode(self, text: str) -> list[int]:
        """lm-eval's HFLM.tok_encode: the tokenizer's own special tokens, unless the text already starts with BOS."""
        tok = self.tokenizer
        bos = tok.bos_token
        kwargs = {"add_special_tokens": False} if bos and text.startswith(bos) else {}
        return list(tok(text, **kwargs)["input_ids"])

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval 0.4's split: trailing context spaces move to the continuation; encode whole, cut at the context."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self._encode(context + continuation)
        ctx = self._encode(context)
        return ctx, whole[len(ctx):]

    def _prefix_token(self) -> int:
        tok = self.tokenizer
        for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id):
            if t is not None:
                return int(t)
        return 0

    def _tokens(self, r: LogLikelihood) -> tuple[list[int], int]:
        """(context + continuation tokens, number of continuation tokens), with lm-eval's empty-context and truncation rules."""
        if r.context == "":
            cont = list(self.tokenizer(r.continuation, add_special_tokens=False)["input_ids"])
            p = self._prefix_token()
            ctx, cont = ([p], cont) if not cont or cont[0] != p else (cont[:1], cont[1:])
        else:
            ctx, cont = self._encode_pair(r.context, r.continuation)
        full = (ctx + cont)[-(self.max_length + 1):]
        return full, min(len(cont), len(full) - 1)

    def _forward_kwargs(self) -> tuple[str, str | None]:
        """The KV-cache argument's name (transformers 5 renamed it) and how logits_to_keep can be used.

        "mask": a boolean (batch, seq) tensor (models built on transformers' slice_logits_to_keep); "int": only
        "the last k positions" (older model code); None: not accepted, full logits are computed and masked.
        """
        if not hasattr(self, "_fwd"):
            import inspect

            inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            params = inspect.signature(inner.forward).parameters
            keep = None
            if "logits_to_keep" in params:
                try:
                    src = inspect.getsource(type(inner).forward)
                except (OSError, TypeError):
                    src = ""
                keep = "mask" if "slice_logits_to_keep(" in src else "int"
            self._fwd = ("cache" if "cache" in params else "past_key_values", keep)
        return self._fwd

    @staticmethod
    def _groups(seqs: list[tuple[list[int], int]]) -> list[tuple[list[int], int]]:
        """Requests whose model inputs (tokens[:-1]) share a prefix, as (members, shared prefix length).

        Sorted token sequences put same-context choices next to each other; a request joins the open
        group when that saves more tokens than shortening the group's prefix costs its members.
        The prefix never extends past a member's first scored position + 1, so only the prefix's last
        position is ever scored.
        """
        order = sorted(range(len(seqs)), key=lambda i: seqs[i][0])
        groups: list[tuple[list[int], int]] = []
        for i in order:
            inp, n = seqs[i][0][:-1], seqs[i][1]
            cap = max(1, len(inp) - n + 1)
            if groups:
                members, p = groups[-1]
                first = seqs[members[0]][0]
                lcp = 0
                limit = min(p, cap)
                while lcp < limit and first[lcp] == inp[lcp]:
                    lcp += 1
                if lcp >= MIN_SHARED and (len(members) - 1) * (p - lcp) < lcp:
                    groups[-1] = (members + [i], lcp)
                    continue
            groups.append(([i], cap))
        return groups

    @staticmethod
    def _chunks(lengths: list[int]) -> list[list[int]]:
        """Split rows sorted by length into consecutive chunks minimising padded tokens + a per-forward overhead."""
        n = len(lengths)
        best = [0.0] + [float("inf")] * n
        cut = [0] * (n + 1)
        for b in range(1, n + 1):
            for a in range(b):
                cost = best[a] + (b - a) * lengths[b - 1] + FORWARD_OVERHEAD
                if cost < best[b]:
                    best[b], cut[b] = cost, a
        out, b = [], n
        while b > 0:
            out.append(list(range(cut[b], b)))
            b = cut[b]
        return out[::-1]

    @torch.no_grad()
    def loglikelihood(self, requests: list[LogLikelihood]) -> list[tuple[float, bool]]:
        """Score each (context, continuation) with lm-eval 0.4's tokens, computing each shared prefix once.

        Stage 1 runs, left-padded, every group's shared prefix (usually a question) and every request that
        shares nothing, in full. Stage 2 runs each group member's remaining tokens (usually its answer
        choice) on its group's KV cache. Rows are bucketed by length to keep padding low, and the
        vocabulary projection is only computed at scored positions. The numbers equal one full forward
        per request up to float rounding.
        """
        seqs = [self._tokens(r) for r in requests]
        out: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
        live = [i for i, (_, n) in enumerate(seqs) if n > 0]
        if not live:
            return out
        groups = [([live[j] for j in m], p) for m, p in self._groups([seqs[i] for i in live])]
        # a request alone in its group runs whole in stage 1 and is scored at its last n positions
        groups = [(m, len(seqs[m[0]][0]) - 1 if len(m) == 1 else p) for m, p in groups]
        order = sorted(range(len(groups)), key=lambda g: groups[g][1])
        for chunk in self._chunks([groups[g][1] for g in order]):
            for i, answer in self._score_groups([groups[order[j]] for j in chunk], seqs).items():
                out[i] = answer
        return out

    def _score_groups(self, groups: list[tuple[list[int], int]], seqs: list[tuple[list[int], int]]
                      ) -> dict[int, tuple[float, bool]]:
        cache_kw, keep_mode = self._forward_kwargs()
        dev = self.device
        pad = self.tokenizer.pad_token_id or 0
        keep_last = [seqs[m[0]][1] if len(m) == 1 else 1 for m, _ in groups]

        # Stage 1: prefixes and lone requests, left-padded so every row ends at the same column.
        width = max(p for _, p in groups)
        ids = torch.full((len(groups), width), pad, dtype=torch.long)
        mask = torch.zeros((len(groups), width), dtype=torch.long)
        keep = torch.zeros((len(groups), width), dtype=torch.bool)
        for g, (members, p) in enumerate(groups):
            ids[g, width - p:] = torch.tensor(seqs[members[0]][0][:p])  # p < len(tokens): always model input
            mask[g, width - p:] = 1
            keep[g, width - keep_last[g]:] = True
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        multi = any(len(m) > 1 for m, _ in groups)
        last = max(keep_last)  # rows end at the same column, so "the last k positions" also works
        kw: dict[str, Any] = {}
        if keep_mode == "mask":
            kw = {"logits_to_keep": keep.to(dev)}
        elif keep_mode == "int":
            kw = {"logits_to_keep": last}
        res = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=multi, **kw)
        flat = res.logits if keep_mode == "mask" else res.logits[keep[:, -res.logits.shape[1]:].to(dev)]
        stage1 = torch.log_softmax(flat.float(), dim=-1).split(keep_last)  # per group: its kept positions, in order

        # Stage 2: each group member's tokens after the prefix, on its group's cached keys and values.
        need = {i: seqs[i][1] - (1 if len(seqs[i][0]) - 1 - seqs[i][1] < p else 0)
                for members, p in groups if len(members) > 1 for i in members}
        rows = sorted(((g, i) for g, (members, p) in enumerate(groups) if len(members) > 1 for i in members
                       if len(seqs[i][0]) - 1 > p), key=lambda r: len(seqs[r[1]][0]) - 1 - groups[r[0]][1])
        stage2: dict[int, torch.Tensor] = {}
        cache = getattr(res, "cache", None) or getattr(res, "past_key_values", None)
        chunks = self._chunks([len(seqs[i][0]) - 1 - groups[g][1] for g, i in rows]) if rows else []
        for chunk in chunks:
            part = [rows[j] for j in chunk]
            swidth = len(seqs[part[-1][1]][0]) - 1 - groups[part[-1][0]][1]
            sids = torch.full((len(part), swidth), pad, dtype=torch.long)
            smask = torch.zeros((len(part), swidth), dtype=torch.long)
            skeep = torch.zeros((len(part), swidth), dtype=torch.bool)
            spos = torch.zeros((len(part), swidth), dtype=torch.long)
            for k, (g, i) in enumerate(part):
                p = groups[g][1]
                rest = seqs[i][0][p:-1]
                sids[k, : len(rest)] = torch.tensor(rest)
                smask[k, : len(rest)] = 1
                skeep[k, len(rest) - need[i]: len(rest)] = True
                spos[k] = torch.arange(p, p + swidth).clamp(max=self.max_length - 1)
            index = torch.tensor([g for g, _ in part], device=dev)
            kv = cache if len(chunks) == 1 else copy.deepcopy(cache)
            kv.batch_select_indices(index)  # type: ignore[union-attr]  # the prefix pass ran with use_cache
            full_mask = torch.cat([mask.to(dev)[index], smask.to(dev)], dim=1)
            kw2 = {"logits_to_keep": skeep.to(dev)} if keep_mode == "mask" else {}
            res2 = self.model(input_ids=sids.to(dev), attention_mask=full_mask, position_ids=spos.to(dev),
                              use_cache=True, **{cache_kw: kv}, **kw2)
            flat2 = res2.logits if keep_mode == "mask" else res2.logits[skeep.to(dev)]
            parts2 = torch.log_softmax(flat2.float(), dim=-1).split([need[i] for _, i in part])
            stage2.update({i: lp for (_, i), lp in zip(part, parts2)})

        out: dict[int, tuple[float, bool]] = {}
        for g, (members, p) in enumerate(groups):
            for i in members:
                full, n = seqs[i]
                if len(members) == 1:
                    lp = stage1[g]
                else:
                    parts = [stage1[g]] if len(full) - 1 - n < p else []  # first scored position = the prefix's last
                    if i in stage2:
                        parts.append(stage2[i])
                    lp = torch.cat(parts)
                targets = torch.tensor(full[-n:], device=lp.device)
                score = lp.gather(-1, targets[:, None]).sum().item()
                greedy = bool((lp.argmax(-1) == targets).all().item())
                out[i] = (float(score), greedy)
        return out
