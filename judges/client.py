"""An async client for OpenAI-compatible chat endpoints, built for judging many answers cheaply and safely.

The HTTP part (bounded concurrency, retries with jitter honouring Retry-After, failures, redaction of keys) is
harness.backends.transport, shared with the openai model backend; this module adds what judging needs:

- cost: token usage is summed and priced; once `max_cost` would be passed no new request is sent
  (BudgetExceeded), so a run stops cleanly and a re-run continues from the cache;
- cache: sqlite keyed by judge model, base URL, messages and settings. The API key is read from
  OPENAI_API_KEY, sent only in the Authorization header, and never hashed, logged or stored;
- redaction: every reply has the key and any bearer token cut out before it is returned, cached, printed or
  written (servers do echo keys).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.transport import (  # noqa: F401 - re-exported: the judges' public names
    DEFAULT_BASE_URL,
    RemoteFailure,
    Transport,
    TransportSettings,
    TransportStats,
    redact,
    retry_after_seconds,
)
from harness.errors import HarnessError

# USD per million (input, output) tokens, list prices when written; override with --price-in/--price-out.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}
Messages = tuple[tuple[str, str], ...]


class BudgetExceeded(Exception):
    """Raised instead of sending a request that could take the spend past --max-cost."""


@dataclass
class JudgeSettings:
    model: str
    base_url: str = DEFAULT_BASE_URL
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout: float = 120.0
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_concurrency: int = 8
    price_in: float | None = None  # USD per million prompt tokens
    price_out: float | None = None
    max_cost: float | None = None  # USD

    def prices(self) -> tuple[float, float]:
        known = PRICES.get(self.model, (None, None))
        pin = self.price_in if self.price_in is not None else known[0]
        pout = self.price_out if self.price_out is not None else known[1]
        if self.max_cost is not None and (pin is None or pout is None):
            raise HarnessError(f"--max-cost needs prices for judge {self.model!r}: pass --price-in and --price-out "
                               "(USD per million tokens)")
        return float(pin or 0.0), float(pout or 0.0)


@dataclass
class Completion:
    text: str | None  # None when every attempt failed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0
    error: str | None = None  # "api: ..." when the call failed after its attempts


@dataclass
class Usage(TransportStats):
    """The transport's counts (requests, retries, failures, by_status) plus what judging adds: cache hits, tokens, cost."""

    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def summary(self) -> str:
        return (f"{self.requests} requests ({self.retries} retries, {self.failures} failed), {self.cache_hits} cached; "
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens; cost ${self.cost:.4f}")


def cache_key(settings: JudgeSettings, messages: Messages) -> str:
    """What decides a judge reply: model, endpoint, messages, sampling settings. Never the key."""
    blob = {"model": settings.model, "base_url": settings.base_url.rstrip("/"), "messages": [list(m) for m in messages],
            "temperature": settings.temperature, "max_tokens": settings.max_tokens}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """sqlite table key -> (text, prompt_tokens, completion_tokens); only successful replies are stored.

    The file is created with the first reply, so a run that got none (bad key, endpoint down) leaves nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None
        if path.exists():
            self._open()
        else:  # checked now, not at the first reply in the middle of the run
            parent = next(p for p in path.parents if p.exists())
            if not parent.is_dir():
                raise HarnessError(f"--cache {path}: {parent} is not a directory")

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise HarnessError(f"--cache {self.path}: is a directory (give a file, e.g. {self.path / 'judge.sqlite'})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # no fsync per reply: a crash loses at most the latest replies
            db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, text TEXT, "
                       "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)")
            db.commit()
        except sqlite3.DatabaseError as e:  # another file given as --cache
            db.close()
            raise HarnessError(f"--cache {self.path}: not a judge cache ({e})") from None
        self.db = db
        return db

    def get(self, key: str) -> tuple[str, int, int] | None:
        if self.db is None:
            return None
        row = self.db.execute("SELECT text, prompt_tokens, completion_tokens FROM replies WHERE key = ?", (key,)).fetchone()
        return (row[0], int(row[1]), int(row[2])) if row else None

    def put(self, key: str, model: str, text: str, pt: int, ct: int) -> None:
        db = self.db or self._open()
        db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)", (key, model, text, pt, ct, time.time()))
        db.commit()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


class JudgeClient:
    """Use as `async with JudgeClient(settings, cache) as c: await c.complete(messages)`."""

    def __init__(self, settings: JudgeSettings, cache: ResponseCache | None = None, api_key: str | None = None,
                 seed: int | None = None) -> None:
        if settings.max_concurrency < 1:
            raise HarnessError(f"--max-concurrency: must be > 0, got {settings.max_concurrency}")
        if settings.max_attempts < 1:
            raise HarnessError(f"--max-attempts: must be > 0, got {settings.max_attempts}")
        self.settings = settings
        self.cache = cache
        self.price_in, self.price_out = settings.prices()
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.usage = Usage()
        wire = TransportSettings(base_url=settings.base_url, timeout=settings.timeout, max_attempts=settings.max_attempts,
                                 backoff_base=settings.backoff_base, backoff_max=settings.backoff_max,
                                 max_concurrency=settings.max_concurrency)
        self.transport = Transport(wire, api_key=key, secrets=(os.environ.get("OPENAI_API_KEY") or "",),
                                   stats=self.usage, seed=seed, what="judge endpoint")
        self.secrets = self.transport.secrets
        self._reserved = 0.0
        self._exhausted: str | None = None  # set once the budget refused a call: no later call is sent either
        self._inflight: dict[str, asyncio.Future[Completion]] = {}

    async def __aenter__(self) -> JudgeClient:
        await self.transport.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.transport.aclose()

    def _cost(self, pt: int, ct: int) -> float:
        return (pt * self.price_in + ct * self.price_out) / 1e6

    def _estimate(self, messages: Messages) -> float:
        """Upper-ish cost of one call before it is sent: prompt chars / 3 tokens plus the full reply budget."""
        chars = sum(len(c) for _, c in messages)
        return self._cost(chars // 3 + 8, self.settings.max_tokens)

    async def complete(self, messages: Messages) -> Completion:
        """The judge's reply: from the cache, from an identical call already in flight, or from the endpoint."""
        key = cache_key(self.settings, messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.cache_hits += 1
                return Completion(hit[0], hit[1], hit[2], cached=True)
        if key in self._inflight:  # the same prompt twice (identical answers): pay once
            done = await asyncio.shield(self._inflight[key])
            self.usage.cache_hits += 1
            return Completion(done.text, done.prompt_tokens, done.completion_tokens, cached=True, error=done.error)
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self._complete_uncached(key, messages)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(result)
        return result

    async def _complete_uncached(self, key: str, messages: Messages) -> Completion:
        async with self.transport.slot():  # the budget is checked only once the call may go out
            if self._exhausted:
                raise BudgetExceeded(self._exhausted)
            if self.settings.max_cost is not None:
                est = self._estimate(messages)
                if self.usage.cost + self._reserved + est > self.settings.max_cost:
                    self._exhausted = (f"spent ${self.usage.cost:.4f}; the next call could pass --max-cost "
                                       f"${self.settings.max_cost:.4f}")
                    raise BudgetExceeded(self._exhausted)
                self._reserved += est
            else:
                est = 0.0
            try:
                result = await self._send(messages)
            finally:
                self._reserved -= est
        if result.text is not None and self.cache is not None:
            self.cache.put(key, self.settings.model, result.text, result.prompt_tokens, result.completion_tokens)
        return result

    async def _send(self, messages: Messages) -> Completion:
        s = self.settings
        body = {"model": s.model, "messages": [{"role": r, "content": c} for r, c in messages],
                "temperature": s.temperature, "max_tokens": s.max_tokens}
        reply = await self.transport.send("/chat/completions", body, _parse_chat, expect="a chat completion")
        if reply.value is None:
            return Completion(None, attempts=reply.attempts, error=f"api: {reply.error}")
        text, pt, ct = reply.value
        text = redact(text, self.secrets)  # before it is cached, parsed or written
        if pt == 0 and ct == 0:  # no usage reported: estimate (4 characters a token)
            pt, ct = sum(len(c) for _, c in messages) // 4, len(text) // 4
        self.usage.prompt_tokens += pt
        self.usage.completion_tokens += ct
        self.usage.cost += self._cost(pt, ct)
        return Completion(text, pt, ct, attempts=reply.attempts)


def _parse_chat(data: Any) -> tuple[str, int, int] | None:
    text = data["choices"][0]["message"]["content"]
    if not isinstance(text, str):
        return None
    usage = data.get("usage") or {}
    return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
