"""The one HTTP transport to OpenAI-compatible endpoints, shared by the judges and the openai model backend.

- concurrency: at most `max_concurrency` requests in flight (one shared httpx connection pool); `slot()` is the
  semaphore, for callers that must decide something (a cost budget) only once a request may go out;
- retries: 429, 408, 5xx, timeouts, dropped or reset connections and a 200 whose body is not the expected reply
  (truncated JSON, a proxy's HTML page) are retried with exponential backoff and full jitter, honouring
  Retry-After (and retry-after-ms); after `max_attempts` attempts the call is reported as failed (`Reply.value`
  None, `Reply.error` why), never raised: callers decide what a failure means;
- a 4xx other than 408/429 is the request's own fault, so it is not retried: RemoteFailure (exit 3);
- counts: every attempt, retry, failure and status is added to `stats` (the judge's Usage extends it), and
  `status()` is a one-line rate for progress bars;
- secrets: the API key is sent only in the Authorization header; every text that comes back (error bodies, URLs in
  messages) has the key and any bearer token cut out by `redact` before it is returned (servers echo keys in 401s).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.errors import HarnessError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRYABLE = (408, 429)  # and every 5xx


class RemoteFailure(HarnessError):
    """The endpoint refused a call for good (a 4xx other than 408/429, or retries exhausted): exit 3, not a usage error."""

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
    return redact_secrets(text, secrets)


def redact_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without the given secrets, and nothing else changed (for model outputs, which must stay as generated)."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, "***")
    return text


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


def _retry_after(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"))


def error_message(resp: httpx.Response, secrets: tuple[str, ...] = ()) -> str:
    """The endpoint's error message on one line (at most 300 characters), redacted before it is cut (a cut key
    would not match)."""
    try:
        err = resp.json().get("error", {})
        msg = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        msg = resp.text
    msg = " ".join(redact(str(msg or ""), secrets).split())
    return msg[:300] if msg else "no message"


@dataclass
class TransportStats:
    """What went over the wire: attempts, retries, calls that failed after every attempt, and each status seen."""

    requests: int = 0  # HTTP requests sent (attempts, including retries)
    retries: int = 0
    failures: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass
class TransportSettings:
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 120.0  # seconds per attempt
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_concurrency: int = 8


@dataclass
class Reply:
    """One call's outcome: the parsed body, or None with why the last attempt failed."""

    value: Any
    attempts: int
    status: int | None = None  # the last HTTP status (None: no response)
    error: str | None = None  # "HTTP 500 after 6 attempts", or a 4xx's message when permanent=False


Parse = Callable[[Any], Any]  # decoded JSON body -> the reply's value, or None when it is not a valid reply


class Transport:
    """`async with Transport(settings, api_key=...) as t: await t.post("/completions", body, parse)`."""

    def __init__(self, settings: TransportSettings, api_key: str | None = None, secrets: tuple[str, ...] = (),
                 stats: TransportStats | None = None, seed: int | None = None, what: str = "endpoint") -> None:
        if settings.max_concurrency < 1:
            raise HarnessError(f"concurrency: must be > 0, got {settings.max_concurrency}")
        if settings.max_attempts < 1:
            raise HarnessError(f"max attempts: must be > 0, got {settings.max_attempts}")
        self.settings = settings
        self._api_key = api_key
        self.secrets = tuple(s for s in {api_key, *secrets} if s)
        self.stats = stats if stats is not None else TransportStats()
        self.what = what
        self._rng = random.Random(seed)
        self._sem = asyncio.Semaphore(settings.max_concurrency)
        self._http: httpx.AsyncClient | None = None
        self.started = time.monotonic()

    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def open(self) -> None:
        n = self.settings.max_concurrency
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout), limits=limits)
        self.started = time.monotonic()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def slot(self) -> asyncio.Semaphore:
        """The concurrency bound: `async with transport.slot(): ... await transport.send(...)`."""
        return self._sem

    def url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + "/" + path.lstrip("/")

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def status(self) -> str:
        """Requests per second, retries and failures so far, for a progress bar."""
        s = self.stats
        rate = s.requests / max(1e-9, time.monotonic() - self.started)
        return f"{rate:.1f} req/s · {s.retries} retries · {s.failures} failed"

    async def post(self, path: str, body: dict[str, Any], parse: Parse, expect: str = "a completion",
                   permanent: bool = True) -> Reply:
        """`send` within a concurrency slot."""
        async with self._sem:
            return await self.send(path, body, parse, expect, permanent)

    async def get(self, path: str, parse: Parse, expect: str = "a reply", permanent: bool = True) -> Reply:
        async with self._sem:
            return await self.send(path, None, parse, expect, permanent)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def send(self, path: str, body: dict[str, Any] | None, parse: Parse, expect: str = "a completion",
                   permanent: bool = True) -> Reply:
        """POST `body` (GET when None) with retries; the caller holds a slot. A 4xx other than 408/429 raises
        RemoteFailure, or with permanent=False comes back as a failed Reply carrying its status and message."""
        assert self._http is not None, "open the transport first (async with Transport(...))"
        url = self.url(path)
        last, status = "", None
        for attempt in range(self.settings.max_attempts):
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                if body is None:
                    resp = await self._http.get(url, headers=self._headers())
                else:
                    resp = await self._http.post(url, json=body, headers=self._headers())
            except httpx.TimeoutException:
                last, status = "timeout", None
                self._count("timeout")
            except httpx.TransportError as e:  # refused, reset, or a body cut off mid-way
                last, status = f"connection error ({type(e).__name__})", None
                self._count("connection")
            else:
                status = resp.status_code
                self._count(str(status))
                if status == 200:
                    value = _parsed(resp, parse)
                    if value is not None:
                        return Reply(value, attempt + 1, status)
                    last = f"200 with a body that is not {expect}"
                elif status in RETRYABLE or status >= 500:
                    last = f"HTTP {status}"
                    retry_after = _retry_after(resp.headers)
                else:  # the request itself is wrong (or the key): retrying cannot help
                    why = error_message(resp, self.secrets)
                    if not permanent:
                        return Reply(None, attempt + 1, status, why)
                    raise RemoteFailure(f"{self.what} {self.redact(url)}: HTTP {status} ({why})")
            if attempt + 1 < self.settings.max_attempts:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        self.stats.failures += 1
        return Reply(None, self.settings.max_attempts, status, f"{last} after {self.settings.max_attempts} attempts")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.settings.backoff_max, self.settings.backoff_base * (2 ** attempt))
        delay = self._rng.uniform(0, cap)  # full jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _count(self, status: str) -> None:
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1


def _parsed(resp: httpx.Response, parse: Parse) -> Any:
    try:
        return parse(resp.json())
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):  # not JSON, or not the expected shape
        return None
