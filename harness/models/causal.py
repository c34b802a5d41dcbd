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

from harness.models import continuous, vocab_head
from harness.requests import Generate, LogLikelihood


class _StopOnStrings:
    """Per-row stopping for generate(): a row is done once its continuation contains one of its stop strings."""

    def __init__(self, tokenizer: Any, stops: list[tuple[str, ...]], prompt_len: int, n: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops for _ in range(n)]
        self.prompt_len = prompt_len
        self.window = continuous.stop_window(stops)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.tensor([continuous.hits_stop(self.tokenizer, input_ids[i, self.prompt_len:], stops, self.window)
                             for i, stops in enumerate(self.stops)], dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = len(text)
    for s in stops:
        j = text.find(s)
        if j != -1:
            cut = min(cut, j)
    return text[:cut]


class RowSampler:
    """Samples each row's next token with that row's own generator, seeded by (request seed, sample index).

    It runs last among the logits processors and leaves only the drawn token finite, so generate's greedy step
    takes it: a prompt's samples then depend on its seed alone, not on its batch-mates or the batch size.
    Temperature, top-k and top-p are applied as transformers' samplers apply them.
    """

    def __init__(self, seeds: list[tuple[int, int]], temperature: float, top_p: float, top_k: int) -> None:
        self.seeds = seeds
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        picked = self.draw(scores, list(range(len(self.seeds))))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, picked[:, None], 0.0)
        return out

    def draw(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """The next token of each of `rows` (indices into seeds), one draw from each row's generator."""
        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed((seed * 1_000_003 + j) % 2**63)
                               for seed, j in self.seeds]
        logits = scores.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, sorted_idx = torch.sort(logits, descending=False)
            cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            drop = cum <= (1 - self.top_p)
            drop[:, -1] = False  # always keep the most likely token
            logits = logits.masked_fill(drop.scatter(1, sorted_idx, drop), float("-inf"))
        probs = logits.softmax(dim=-1)
        gens = self.generators
        return torch.stack([torch.multinomial(probs[k], 1, generator=gens[i])[0] for k, i in enumerate(rows)])


def _common_prefix(rows: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (the prompt's last token is
    where generation starts)."""
    first, n = rows[0], min(len(x) for x in rows) - 1
    for x in rows[1:]:
        k = 0
        while k < n and x[k] == first[k]:
            k += 1
        n = k
    return max(0, n)


REFILL = 4  # with continuous batching, a generate call holds this many batches: the rows that refill the slots
SHARED_PREFIX_MIN = 16  # tokens: a shorter shared prefix (a "Question:" header) is not worth a forward of its own
MIN_SHARED = 4  # tokens: a shorter common prefix (e.g. "Question:") is not worth a second forward
FORWARD_OVERHEAD = 16  # a model call costs about as much as this many tokens (reading every weight once; measured on CPU)


class CausalLM:
    """Answers generate and loglikelihood requests with a Hugging Face causal LM (optionally PEFT-wrapped)."""

    def __init__(self, model: Any, tokenizer: Any, identity: dict[str, Any], spec: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.batch_size = spec.batch_size
        self.continuous = bool(spec.backend_options.get("continuous_batching", True))
        self.device = spec.device
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_length = int(getattr(model.config, "max_position_embeddings", None)
                              or getattr(model.config, "n_positions", None) or 2048)
        vocab_head.install(model)  # on CPU: the same logits in less time (it checks the head's device and dtype)

    @property
    def batch_sizes(self) -> dict[str, int]:
        """What the runner hands over per call: with continuous batching, several batches of generate requests,
        the rows that refill finished slots (the batch size itself is the rows in flight)."""
        return {"generate": self.batch_size * REFILL} if self.continuous else {}

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
    def generate(self, requests: list[Generate], adapters: list[str] | None = None) -> list[list[str]]:
        """Answers in request order. `adapters` names each row's PEFT adapter ("__base__": none) for a batch that
        mixes the variants of a run over one loaded base."""
        out: list[list[str] | None] = [None] * len(requests)

        def settings(i: int) -> tuple[Any, ...]:
            r = requests[i]
            beam_sampling = r.temperature > 0 and r.num_beams > 1
            return (r.max_new_tokens, r.temperature, r.top_p, r.n, r.num_beams, r.length_penalty,
                    r.no_repeat_ngram_size, r.seed if beam_sampling else 0, i if beam_sampling else 0)

        order = sorted(range(len(requests)), key=settings)
        for _, group in groupby(order, key=settings):
            idx = list(group)  # beam sampling has no per-row generator: one prompt per call, under its seed
            # continuous batching keeps batch_size rows in flight itself; static batches are batch_size requests
            step = len(idx) if self._continuous(requests[idx[0]]) else max(1, self.batch_size)
            for part in (idx[k : k + step] for k in range(0, len(idx), step)):
                names = [adapters[i] for i in part] if adapters is not None else None
                for i, texts in zip(part, self._generate_batch([requests[i] for i in part], names)):
                    out[i] = texts
        return [o or [] for o in out]

    def _generate_batch(self, reqs: list[Generate], adapters: list[str] | None = None) -> list[list[str]]:
        r0 = reqs[0]
        tok = self.tokenizer
        tok.padding_side = "left"
        # n samples of a prompt are n rows of their own (each its own generator), not num_return_sequences
        row_sampling = r0.temperature > 0 and r0.num_beams == 1
        copies = r0.n if row_sampling else 1
        prompts = [self.render(r.prompt) for r in reqs for _ in range(copies)]
        rows = [list(x) for x in tok(prompts, add_special_tokens=False)["input_ids"]]
        budget = self.max_length - r0.max_new_tokens
        if budget > 0:  # keep the end of over-long prompts
            rows = [x[-budget:] for x in rows]
        row_adapters = [a for a in adapters for _ in range(copies)] if adapters is not None else None
        # a prefix every row shares (few-shot exemplars) is computed once, not once per row
        shared = _common_prefix(rows) if len(rows) > 1 and r0.n // copies == 1 and r0.num_beams == 1 \
            and not r0.no_repeat_ngram_size else 0
        shared = shared if shared >= SHARED_PREFIX_MIN else 0
        stops = [r.stop for r in reqs for _ in range(copies)]
        if self._continuous(r0):
            sampler = RowSampler([(r.seed, j) for r in reqs for j in range(copies)], r0.temperature, r0.top_p,
                                 self._top_k()) if row_sampling else None
            prefix = (rows[0][:shared], self._prefix_cache(rows[0][:shared], row_adapters, len(rows))) if shared else None
            tokens = continuous.Decoder(self, rows, stops, r0.max_new_tokens, row_adapters, sampler,
                                        self.batch_size, prefix).run()
            texts = tok.batch_decode(tokens, skip_special_tokens=True)
            return [[cut_at_stop(t, r.stop) for t in texts[i * r0.n : (i + 1) * r0.n]] for i, r in enumerate(reqs)]
        input_ids, attn = self._pad_after_prefix(rows, shared)
        prompt_len = input_ids.shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": r0.max_new_tokens, "do_sample": False, "num_return_sequences": r0.n // copies,
            "num_beams": r0.num_beams, "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
            "temperature": None, "top_p": None, "top_k": None,
        }
        from transformers import LogitsProcessorList, StoppingCriteriaList

        if row_sampling:
            kwargs["logits_processor"] = LogitsProcessorList([RowSampler(
                [(r.seed, j) for r in reqs for j in range(copies)], r0.temperature, r0.top_p, self._top_k())])
        elif r0.temperature > 0:  # beam sampling: transformers' own sampler under the prompt's seed
            kwargs.update(do_sample=True, temperature=r0.temperature, top_p=r0.top_p, top_k=self._top_k() or None)
            torch.manual_seed(r0.seed)
        if r0.num_beams > 1:
            kwargs.update(length_penalty=r0.length_penalty, early_stopping=True)
        if r0.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = r0.no_repeat_ngram_size
        if any(r.stop for r in reqs) and r0.num_beams == 1:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(tok, stops, prompt_len, r0.n // copies)])
        if adapters is not None:  # PEFT repeats the names for beams itself, not for returned sequences
            per_row = r0.n // copies if r0.num_beams == 1 else 1
            kwargs["adapter_names"] = [a for a in adapters for _ in range(copies * per_row)]
        if shared:
            cache, index = self._prefix_cache(rows[0][:shared], row_adapters, len(rows))
            cache.batch_select_indices(torch.tensor(index, device=self.device))
            kwargs[self._forward_kwargs()[0]] = cache
        gen = self.model.generate(input_ids=input_ids, attention_mask=attn, **kwargs)
        texts = tok.batch_decode(gen[:, prompt_len:], skip_special_tokens=True)
        return [[cut_at_stop(t, r.stop) for t in texts[i * r0.n : (i + 1) * r0.n]] for i, r in enumerate(reqs)]

    def _pad_after_prefix(self, rows: list[list[int]], shared: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows as one (ids, mask) pair: the first `shared` tokens, then padding, then each row's own tokens. With
        shared=0 that is plain left padding; positions follow the mask, so every token keeps its unpadded position."""
        pad = self.tokenizer.pad_token_id or 0
        width = max(len(x) for x in rows) - shared
        ids = torch.full((len(rows), shared + width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
        for i, x in enumerate(rows):
            ids[i, :shared] = torch.tensor(x[:shared], dtype=torch.long)
            mask[i, :shared] = 1
            own = x[shared:]
            if own:
                ids[i, shared + width - len(own):] = torch.tensor(own, dtype=torch.long)
                mask[i, shared + width - len(own):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _prefix_cache(self, prefix: list[int], adapters: list[str] | None, n_rows: int) -> tuple[Any, list[int]]:
        """The KV cache of `prefix`, one forward and one cache row per distinct adapter, and which of its rows each
        of the n_rows batch rows takes."""
        names = list(dict.fromkeys(adapters)) if adapters is not None else [""]
        ids = torch.tensor([prefix] * len(names), dtype=torch.long, device=self.device)
        kw: dict[str, Any] = {"adapter_names": names} if adapters is not None else {}
        if self._forward_kwargs()[1] is not None:  # the prefix's logits are not needed
            kw["logits_to_keep"] = 1
        res = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **kw)
        return res.past_key_values, [names.index(a) for a in adapters] if adapters is not None else [0] * n_rows

    def _continuous(self, r: Generate) -> bool:
        """Whether requests like r are generated with continuous batching (greedy or per-row sampling, one
        sequence per row, nothing that needs generate()'s own processors)."""
        return self.continuous and r.num_beams == 1 and (r.temperature > 0 or r.n == 1) \
            and not r.no_repeat_ngram_size and continuous.supported(self.model)

    def _top_k(self) -> int:
        """The model's generation_config top_k (transformers' default 50), which sampling here has always applied."""
        cfg = getattr(self.model, "generation_config", None)
        k = getattr(cfg, "top_k", 50) if cfg is not None else 50
        return int(k or 0)

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
    def _groups(seqs: list[tuple[list[int], int]], keys: list[str] | None = None) -> list[tuple[list[int], int]]:
        """Requests whose model inputs (tokens[:-1]) share a prefix, as (members, shared prefix length).

        Sorted token sequences put same-context choices next to each other; a request joins the open
        group when that saves more tokens than shortening the group's prefix costs its members.
        The prefix never extends past a member's first scored position + 1, so only the prefix's last
        position is ever scored. Requests of different `keys` (adapters) never share a group: their caches differ.
        """
        key = keys or [""] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: (key[i], seqs[i][0]))
        groups: list[tuple[list[int], int]] = []
        for i in order:
            inp, n = seqs[i][0][:-1], seqs[i][1]
            cap = max(1, len(inp) - n + 1)
            if groups and key[groups[-1][0][0]] == key[i]:
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
    def loglikelihood(self, requests: list[LogLikelihood], adapters: list[str] | None = None) -> list[tuple[float, bool]]:
        """Score each (context, continuation) with lm-eval 0.4's tokens, computing each shared prefix once.

        Stage 1 runs, left-padded, every group's shared prefix (usually a question) and every request that
        shares nothing, in full. Stage 2 runs each group member's remaining tokens (usually its answer
        choice) on its group's KV cache. Rows are bucketed by length to keep padding low, and the
        vocabulary projection is only computed at scored positions. The numbers equal one full forward
        per request up to float rounding. `adapters` names each request's PEFT adapter (see generate).
        """
        seqs = [self._tokens(r) for r in requests]
        out: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
        live = [i for i, (_, n) in enumerate(seqs) if n > 0]
        if not live:
            return out
        keys = [adapters[i] for i in live] if adapters is not None else None
        groups = [([live[j] for j in m], p) for m, p in self._groups([seqs[i] for i in live], keys)]
        # a request alone in its group runs whole in stage 1 and is scored at its last n positions
        groups = [(m, len(seqs[m[0]][0]) - 1 if len(m) == 1 else p) for m, p in groups]
        order = sorted(range(len(groups)), key=lambda g: groups[g][1])
        for chunk in self._chunks([groups[g][1] for g in order]):
            for i, answer in self._score_groups([groups[order[j]] for j in chunk], seqs, adapters).items():
                out[i] = answer
        return out

    def _score_groups(self, groups: list[tuple[list[int], int]], seqs: list[tuple[list[int], int]],
                      adapters: list[str] | None = None) -> dict[int, tuple[float, bool]]:
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
        if adapters is not None:
            kw["adapter_names"] = [adapters[m[0]] for m, _ in groups]
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
            kw2: dict[str, Any] = {"logits_to_keep": skeep.to(dev)} if keep_mode == "mask" else {}
            if adapters is not None:
                kw2["adapter_names"] = [adapters[i] for _, i in part]
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
