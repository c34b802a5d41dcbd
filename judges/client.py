"""An async client for OpenAI-compatible chat endpoints, built for judging many answers cheaply and safely.

- concurrency: at most `max_concurrency` requests in flight (one shared httpx connection pool);
- retries: 429, 5xx, timeouts and dropped connections are retried with exponential backoff and full
  jitter, honouring Retry-After; at most `max_attempts` attempts, then the call is reported as failed
  (the caller records it as an API failure; the next run tries again);
- cost: token usage is summed and priced; once `max_cost` would be passed no new request is sent
  (BudgetExceeded), so a run stops cleanly and a re-run continues from the cache;
- cache: sqlite keyed by judge model, base URL, messages and settings. The API key is read from
  OPENAI_API_KEY, sent only in the Authorization header, and never hashed, logged or stored;
- redaction: every text that comes back from the endpoint (error bodies, replies) has the key and any
  bearer token cut out before it is returned, cached, printed or written (servers do echo keys in 401s).

The HTTP part (`JudgeClient._send`, `redact`, `RemoteFailure`, `retry_after_seconds`) knows nothing about
judging, so it can move into a transport module shared with an OpenAI-compatible model backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.errors import HarnessError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
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


class RemoteFailure(HarnessError):
    """The endpoint refused a call for good (4xx other than 429, or retries exhausted): exit 3, not a usage error."""

    exit_code = 3


# "Authorization: Bearer x", "authorization=x", "Bearer x": the value goes, whatever key was configured. A token is
# 8+ characters with a digit, '-' or '_' in it, so prose ("the Bearer of bad news") is left alone.
_TOKEN = r"(?=[^\s\"'\\,;}]*[\d_-])[^\s\"'\\,;}]{8,}"  # no backslash: a JSON escape stays whole
_AUTH = re.compile(r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?)(?:(?i:bearer)\s+)?" + _TOKEN)
_BEARER = re.compile(r"((?i:bearer)\s+)" + _TOKEN)
MIN_SECRET = 8  # shorter "keys" (test placeholders) are not secret, and cutting them would garble replies


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without the given secrets or any Authorization / bearer value (each becomes ***)."""
    text = _AUTH.sub(lambda m: m.group(1) + "***", text)
    text = _BEARER.sub(lambda m: m.group(1) + "***", text)
    for secret in secrets:
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, "***")
    return text


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
class Usage:
    requests: int = 0  # HTTP requests sent (attempts, including retries)
    retries: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)

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


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta form, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


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
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.secrets = tuple(k for k in {self._api_key, os.environ.get("OPENAI_API_KEY")} if k)
        self.usage = Usage()
        self._sem = asyncio.Semaphore(settings.max_concurrency)
        self._reserved = 0.0
        self._exhausted: str | None = None  # set once the budget refused a call: no later call is sent either
        self._rng = random.Random(seed)
        self._http: httpx.AsyncClient | None = None
        self._inflight: dict[str, asyncio.Future[Completion]] = {}

    async def __aenter__(self) -> JudgeClient:
        limits = httpx.Limits(max_connections=self.settings.max_concurrency,
                              max_keepalive_connections=self.settings.max_concurrency)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout), limits=limits)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _cost(self, pt: int, ct: int) -> float:
        return (pt * self.price_in + ct * self.price_out) / 1e6

    def _estimate(self, messages: Messages) -> float:
        """Upper-ish cost of one call before it is sent: prompt chars / 3 tokens plus the full reply budget."""
        chars = sum(len(c) for _, c in messages)
        return self._cost(chars // 3 + 8, self.settings.max_tokens)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.settings.backoff_max, self.settings.backoff_base * (2 ** attempt))
        delay = self._rng.uniform(0, cap)  # full jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

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
        async with self._sem:
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
        assert self._http is not None, "use JudgeClient as an async context manager"
        s = self.settings
        url = s.base_url.rstrip("/") + "/chat/completions"
        body = {"model": s.model, "messages": [{"role": r, "content": c} for r, c in messages],
                "temperature": s.temperature, "max_tokens": s.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(s.max_attempts):
            if attempt:
                self.usage.retries += 1
            self.usage.requests += 1
            retry_after: float | None = None
            try:
                resp = await self._http.post(url, json=body, headers=headers)
            except httpx.TimeoutException:
                last = "timeout"
                self._count("timeout")
            except httpx.TransportError as e:
                last = f"connection error ({type(e).__name__})"
                self._count("connection")
            else:
                self._count(str(resp.status_code))
                if resp.status_code == 200:
                    parsed = self._parse(resp)
                    if parsed is not None:
                        text, pt, ct = parsed
                        text = redact(text, self.secrets)  # before it is cached, parsed or written
                        if pt == 0 and ct == 0:  # no usage reported: estimate (4 characters a token)
                            pt, ct = sum(len(c) for _, c in messages) // 4, len(text) // 4
                        self.usage.prompt_tokens += pt
                        self.usage.completion_tokens += ct
                        self.usage.cost += self._cost(pt, ct)
                        return Completion(text, pt, ct, attempts=attempt + 1)
                    last = "200 with a body that is not a chat completion"
                elif resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}"
                    retry_after = retry_after_seconds(resp.headers.get("retry-after"))
                else:  # 4xx other than 429: the request itself is wrong, retrying cannot help
                    why = _error_message(resp, self.secrets)
                    raise RemoteFailure(f"judge endpoint {redact(url, self.secrets)}: HTTP {resp.status_code} ({why})")
            if attempt + 1 < s.max_attempts:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        self.usage.failures += 1
        return Completion(None, attempts=s.max_attempts, error=f"api: {last} after {s.max_attempts} attempts")

    def _count(self, status: str) -> None:
        self.usage.by_status[status] = self.usage.by_status.get(status, 0) + 1

    @staticmethod
    def _parse(resp: httpx.Response) -> tuple[str, int, int] | None:
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        if not isinstance(text, str):
            return None
        usage = data.get("usage") or {}
        return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _error_message(resp: httpx.Response, secrets: tuple[str, ...] = ()) -> str:
    """The first line of the endpoint's error message, redacted before it is cut (a cut key would not match)."""
    try:
        err = resp.json().get("error", {})
        msg = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        msg = resp.text
    msg = redact(str(msg or ""), secrets).strip()
    return msg.splitlines()[0][:200] if msg else "no message"
