"""Continuous batching for greedy and sampled generation: a finished row's slot takes the next prompt at once.

A static batch runs until its longest row ends, so rows that stop early (a stop string, end of text) leave their
slots idle. Here at most `slots` rows decode together; when some finish, they leave the KV cache and the next
prompts are prefilled (left-padded among themselves) and joined to it, their keys and values left-padded to the
cache's width. Positions come from each row's own mask, so every token sees what it would see alone, and a row's
text is what the static path gives (greedy: the same argmax; sampled: each sample draws from its own generator).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

# generation_config settings that add logits processors this loop does not apply: with any set, use generate()
_PROCESSORS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None, "min_length": 0,
               "min_new_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
               "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None,
               "encoder_repetition_penalty": 1.0, "exponential_decay_length_penalty": None}


def supported(model: Any) -> bool:
    """Whether the model's own generation settings leave greedy decoding as a plain argmax, and its KV cache is
    one full-attention layer list (sliding-window and hybrid caches are not re-shaped here)."""
    cfg = getattr(model, "generation_config", None)
    if cfg is not None and not all(getattr(cfg, k, v) in (v, None) for k, v in _PROCESSORS.items()):
        return False
    config = getattr(model, "config", None)
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    return not getattr(config, "sliding_window", None) and types == {"full_attention"} \
        and not getattr(config, "is_encoder_decoder", False)


def stop_window(stops: list[tuple[str, ...]]) -> int:
    """How many trailing tokens to decode to see any of `stops` (a token decodes to one character at least)."""
    return max((len(s) for row in stops for s in row), default=0) + 8


def hits_stop(tokenizer: Any, tokens: Any, stops: tuple[str, ...], window: int) -> bool:
    """Whether a row's generated tokens so far end in text containing one of its stop strings."""
    return bool(stops) and any(s in tokenizer.decode(tokens[-window:], skip_special_tokens=True) for s in stops)


class _Growing(DynamicLayer):
    """A DynamicLayer whose keys and values are views into buffers with room for `grow_by` more tokens: a decoding
    step writes its token's keys and values in place instead of copying the whole cache (DynamicLayer's torch.cat:
    32 steps at a 900-token context, batch 8, took 12-14 s instead of 16-20 s here). Same numbers: the views hold
    exactly what cat would give.
    Whoever replaces `keys` (row selection, joins) leaves the buffer; the next update copies into a new one."""

    grow_by = 64
    room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        n, have = key_states.shape[-2], (keys.shape[-2] if keys.numel() else 0)
        room = self.room
        if room is None or room[0].data_ptr() != keys.data_ptr() or room[0].shape[0] != key_states.shape[0] \
                or room[0].shape[-2] < have + n:
            shape = (*key_states.shape[:2], have + n + self.grow_by, key_states.shape[-1])
            room = (key_states.new_empty(shape), value_states.new_empty(shape))
            if have:
                room[0][:, :, :have], room[1][:, :, :have] = keys, values
            self.room = room
        room[0][:, :, have:have + n], room[1][:, :, have:have + n] = key_states, value_states
        self.keys, self.values = room[0][:, :, :have + n], room[1][:, :, :have + n]
        return self.keys, self.values


def _grow_in_place(cache: Any, grow_by: int) -> None:
    """Let the cache's plain dynamic layers grow in place (other layer kinds keep their own update)."""
    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer:
            layer.__class__ = _Growing
            layer.grow_by = grow_by  # type: ignore[attr-defined]  # now a _Growing


@dataclass
class _Row:
    index: int
    tokens: list[int] = field(default_factory=list)  # generated so far


class Decoder:
    """One group of rows with the same settings, decoded `slots` at a time."""

    def __init__(self, lm: Any, rows: list[list[int]], stops: list[tuple[str, ...]], max_new_tokens: int,
                 adapters: list[str] | None, sampler: Any | None, slots: int,
                 prefix: tuple[list[int], tuple[Any, list[int]]] | None = None) -> None:
        """`prefix`: (tokens every row starts with, (their KV cache, the cache row each of `rows` takes)):
        admitted rows then prefill only what follows it."""
        self.lm, self.rows, self.stops, self.max_new = lm, rows, stops, max_new_tokens
        self.prefix = prefix
        self.adapters, self.sampler, self.slots = adapters, sampler, max(1, slots)
        self.eos = lm.tokenizer.eos_token_id
        self.window = stop_window(stops)
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.active: list[_Row] = []
        self.pos = torch.zeros(0, dtype=torch.long)  # next position of each active row
        self.last = torch.zeros(0, dtype=torch.long)  # last token of each active row
        self.done: dict[int, list[int]] = {}

    def run(self) -> list[list[int]]:
        pending = deque(range(len(self.rows)))
        while pending or self.active:
            free = self.slots - len(self.active)
            # prompts join in groups (half the slots at least): each prefill is a forward of its own
            if pending and free > 0 and (not self.active or free >= min(len(pending), max(1, self.slots // 2))):
                self._admit([pending.popleft() for _ in range(min(self.slots - len(self.active), len(pending)))])
            else:
                self._step()
        return [self.done[i] for i in range(len(self.rows))]

    # --- model calls --------------------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, names: list[str] | None,
                 cache: Any) -> Any:
        kw: dict[str, Any] = {"adapter_names": names} if names is not None else {}
        if cache is not None:
            kw[self.lm._forward_kwargs()[0]] = cache
        if self.lm._forward_kwargs()[1] is not None:  # only the last position's logits are needed
            kw["logits_to_keep"] = 1
        dev = self.lm.device
        return self.lm.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                             use_cache=True, **kw)

    def _names(self, rows: list[_Row]) -> list[str] | None:
        return [self.adapters[r.index] for r in rows] if self.adapters is not None else None

    def _pick(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        scores = logits[:, -1, :].float()
        if self.sampler is None:
            return scores.argmax(-1).cpu()
        return self.sampler.draw(scores, [r.index for r in rows]).cpu()

    def _admit(self, new: list[int]) -> None:
        """Prefill the prompts of rows `new` (left-padded together) and join them to the running batch."""
        pad = self.lm.tokenizer.pad_token_id or 0
        p = len(self.prefix[0]) if self.prefix is not None else 0
        width = max(len(self.rows[i]) for i in new) - p
        ids = torch.full((len(new), width), pad, dtype=torch.long)
        mask = torch.zeros((len(new), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for k, i in enumerate(new):
            own = self.rows[i][p:]
            ids[k, width - len(own):] = torch.tensor(own, dtype=torch.long)
            mask[k, p + width - len(own):] = 1
        pos = ((mask.cumsum(1) - 1).clamp(min=0))[:, p:]
        rows = [_Row(i) for i in new]
        cache = None
        if self.prefix is not None:  # the shared tokens' keys and values, one copy per admitted row
            cache = copy.deepcopy(self.prefix[1][0])
            cache.batch_select_indices(torch.tensor([self.prefix[1][1][i] for i in new], device=self.lm.device))
        res = self._forward(ids, mask, pos, self._names(rows), cache)
        self._join(res.past_key_values, mask, rows, pos[:, -1] + 1)
        self._advance(rows, self._pick(res.logits, rows), offset=len(self.active) - len(rows))

    def _step(self) -> None:
        mask = torch.cat([self.mask, torch.ones((len(self.active), 1), dtype=torch.long)], dim=1)
        res = self._forward(self.last[:, None], mask, self.pos[:, None], self._names(self.active), self.cache)
        self.cache, self.mask, self.pos = res.past_key_values, mask, self.pos + 1
        self._advance(self.active, self._pick(res.logits, self.active), offset=0)

    # --- bookkeeping --------------------------------------------------------------------------------------------
    def _advance(self, rows: list[_Row], picked: torch.Tensor, offset: int) -> None:
        """Append each row's new token; rows that are done leave the batch."""
        tok = self.lm.tokenizer
        gone: set[int] = set()
        for k, (row, t) in enumerate(zip(rows, picked.tolist())):
            row.tokens.append(int(t))
            if len(row.tokens) >= self.max_new or t == self.eos or \
                    hits_stop(tok, row.tokens, self.stops[row.index], self.window):
                self.done[row.index] = row.tokens
                gone.add(offset + k)
            self.last[offset + k] = int(t)
        survivors = [j for j in range(len(self.active)) if j not in gone]
        n = len(self.active)
        if len(survivors) < n:
            self._select(survivors)

    def _select(self, survivors: list[int]) -> None:
        self.active = [self.active[j] for j in survivors]
        self.pos, self.last, self.mask = self.pos[survivors], self.last[survivors], self.mask[survivors]
        if not self.active:
            self.cache, self.mask = None, torch.zeros((0, 0), dtype=torch.long)
            return
        self.cache.batch_select_indices(torch.tensor(survivors, device=self.lm.device))
        first = int(self.mask.any(0).int().argmax())  # columns no remaining row attends to are dropped
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]

    def _join(self, cache: Any, mask: torch.Tensor, rows: list[_Row], pos: torch.Tensor) -> None:
        self.last = torch.cat([self.last, torch.zeros(len(rows), dtype=torch.long)])
        self.pos = torch.cat([self.pos, pos])
        self.active += rows
        if self.cache is None:
            self.cache, self.mask = cache, mask
            _grow_in_place(self.cache, max(16, self.max_new))
            return
        width = max(self.mask.shape[1], mask.shape[1])

        def left(t: torch.Tensor, n: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, 0, n, 0)) if n else t

        for old, new in zip(self.cache.layers, cache.layers):
            a, b = width - old.keys.shape[2], width - new.keys.shape[2]
            old.keys = torch.cat([left(old.keys, a), left(new.keys, b)])
            old.values = torch.cat([left(old.values, a), left(new.values, b)])
        self.mask = torch.cat([torch.nn.functional.pad(self.mask, (width - self.mask.shape[1], 0)),
                               torch.nn.functional.pad(mask, (width - mask.shape[1], 0))])
