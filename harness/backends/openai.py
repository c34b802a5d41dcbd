"""The openai backend: a model behind an OpenAI-compatible endpoint (`vllm serve`, a hosted API) as the model under
evaluation, over the same transport as the judges (harness/backends/transport.py).

- `--model` is the served model name; each `--adapter` names a served LoRA module (vLLM's `--lora-modules
  name=path`), scored as its own variant; `--with-base` also scores the served base. Identities (the store keys)
  hold the base URL, the names and what /v1/models reports about each (id, root, parent), never the key.
- generate: /v1/completions for plain prompts, /v1/chat/completions for messages (the server's chat template);
  stop strings, max tokens, temperature, top_p, n and seed are sent, and outputs are cut at the first stop string
  as the hf backend cuts them (vLLM's stop_reason puts back the stop string the server removed, so overlapping
  stops such as "\\n\\nQuestion:" and "Question:" cut at the same place).
- loglikelihood: /v1/completions with echo, logprobs=1 and max_tokens=0 (1 where a server needs it), scored on
  the prompt tokens that cover the continuation by the server's character offsets, after lm-eval 0.4's split
  (trailing context spaces move to the continuation, as in the hf backend); is_greedy from top_logprobs.
  What the endpoint can do is probed once when the session opens, so a task it cannot serve is a one-line error
  before anything runs (`check`), not a failure half-way.
- every variant's requests are in flight together (mixes_variants), `concurrency` at a time, and each answer is
  stored the moment it arrives (answer_each, harness/execute/local.py), so a kill loses only what was in flight.
  Requests that still fail after their attempts do not stop the others; once all have finished the run ends with
  exit 3 (RequestsFailed) and the count, every answer that did arrive kept.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from harness.backends.base import Backend, BackendOption, VariantInfo, VariantModel
from harness.backends.transport import (
    DEFAULT_BASE_URL,
    RemoteFailure,
    Reply,
    Transport,
    TransportSettings,
    redact_secrets,
)
from harness.errors import HarnessError
from harness.requests import Answer, Generate, LogLikelihood, Request

T = TypeVar("T")
PROBE_PROMPT = "Hello world, this is a probe."
MAX_STOPS = 4  # the OpenAI API and vLLM refuse more stop sequences; the others are cut locally


class RequestsFailed(RemoteFailure):
    """Requests the endpoint did not answer after every attempt: exit 3, stored answers kept."""


@dataclass(frozen=True)
class Failed:
    """One request that failed for good (the reason, redacted)."""

    error: str


@dataclass
class Capabilities:
    """What the endpoint can do for the base model, learnt by one probe when the session opens."""

    completions: bool = True
    loglikelihood: bool = True
    ll_max_tokens: int = 0  # 0, or 1 for servers that refuse max_tokens=0 with echo
    why: str = ""  # why completions or log-likelihoods are unavailable
    fingerprint: str | None = None  # system_fingerprint of the probe's reply (e.g. vllm-0.32.0-...)


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval 0.4's split (as harness/models/causal.py): trailing context spaces belong to the continuation."""
    n = len(context) - len(context.rstrip())
    if n > 0:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = len(text)
    for s in stops:
        j = text.find(s)
        if j != -1:
            cut = min(cut, j)
    return text[:cut]


def server_stops(stops: tuple[str, ...]) -> list[str]:
    """At most MAX_STOPS stop strings for the server. A stop that ends with another one is left out: the shorter
    one ends where it ends, so the server stops at the same token, and the local cut (with the server's stop_reason
    put back) still finds the longer one ("Question:" stands for "\\n\\nQuestion:")."""
    kept = [s for s in stops if not any(t != s and s.endswith(t) for t in stops)]
    return list(dict.fromkeys(kept))[:MAX_STOPS]


def continuation_score(data: Any, prompt: str, n_ctx: int) -> tuple[float, bool] | None:
    """(sum of continuation log-probs, every continuation token greedy) from an echo reply; None if it is not one.

    A prompt token belongs to the continuation when it starts at or after the context's last character, or runs
    past it (a token across the boundary); generated tokens (offsets at or past the prompt's end) are ignored.
    """
    lp = data["choices"][0]["logprobs"]
    offs, vals, toks = lp["text_offset"], lp["token_logprobs"], lp["tokens"]
    tops = lp.get("top_logprobs") or [None] * len(toks)
    if not (len(offs) == len(vals) == len(toks) == len(tops)) or not offs:
        return None
    n = sum(1 for o in offs if o < len(prompt))
    ends = list(offs[1:n]) + [len(prompt)]
    picked = [i for i in range(n) if offs[i] >= n_ctx or ends[i] > n_ctx]
    if not picked or any(vals[i] is None for i in picked):
        return None
    score = float(sum(vals[i] for i in picked))
    greedy = all(isinstance(tops[i], dict) and tops[i] and vals[i] >= max(tops[i].values()) for i in picked)
    return score, greedy


class OpenAISession:
    """Every variant served by one endpoint; answers mixed batches concurrently on a private event loop."""

    mixes_variants = True
    kind = "causal"

    def __init__(self, spec: Any, opts: dict[str, Any]) -> None:
        check_spec(spec, opts)
        self.spec = spec
        self.base_url = str(opts["base_url"]).rstrip("/")
        self.endpoint: str | None = opts.get("endpoint")
        self.batch_size = int(opts["concurrency"])
        env = str(opts["api_key_env"])
        key = os.environ.get(env) or None
        if key is None and self.base_url == DEFAULT_BASE_URL:
            raise HarnessError(f"--backend openai: {env} is not set (the API key is read from the environment only; "
                               "api_key_env=VAR names another variable)")
        settings = TransportSettings(base_url=self.base_url, timeout=opts["timeout"], max_attempts=opts["max_attempts"],
                                     backoff_base=opts["backoff"], max_concurrency=opts["concurrency"])
        self.transport = Transport(settings, api_key=key, secrets=(os.environ.get("OPENAI_API_KEY") or "",),
                                   what="openai endpoint")
        self.answered = 0
        self._loop = asyncio.new_event_loop()
        self._run(self.transport.open())  # no request yet: the endpoint is asked about itself when first needed
        self._variant_list: list[VariantInfo] | None = None
        self._served: dict[str, str] = {}
        self._caps: Capabilities | None = None
        self._memo: Any = None  # the run's Store, where what the endpoint said about itself is kept
        self._reuse = False
        self._fetched: dict[str, Any] = {}

    @property
    def variants(self) -> list[VariantInfo]:
        """Every variant with its identity; the first use asks /v1/models (a name it does not serve is an error)."""
        if self._variant_list is None:
            self._variant_list, self._served = self._variants(self._recall("models", lambda: self._run(self._models())))
        return self._variant_list

    @property
    def caps(self) -> Capabilities:
        """What the endpoint can do, probed by one request the first time it is needed."""
        if self._caps is None:
            self._caps = Capabilities(**self._recall("capabilities", lambda: asdict(self._run(self._probe()))))
        return self._caps

    def remember(self, store: Any, reuse: bool) -> None:
        """Keep what the endpoint said about itself (its model list, its capabilities) in the run's store, and with
        reuse (--resume) take it from there: a rerun of a finished run then sends no request at all."""
        self._memo, self._reuse = store, reuse
        for what, value in self._fetched.items():
            store.put_many(self._memo_key(), [(what, "endpoint", {"value": value})])

    def _memo_key(self) -> str:
        return f"openai-endpoint {self.base_url} {self.spec.model}"

    def _recall(self, what: str, fetch: Callable[[], Any]) -> Any:
        if self._memo is not None and self._reuse:
            got = self._memo.get_many(self._memo_key(), [what])
            if what in got:
                return got[what]["value"]
        value = self._fetched[what] = fetch()
        if self._memo is not None:
            self._memo.put_many(self._memo_key(), [(what, "endpoint", {"value": value})])
        return value

    # --- opening ---------------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    async def _models(self) -> dict[str, dict[str, Any]] | None:
        """{id: its /v1/models entry}, or None when the endpoint does not list models."""
        reply = await self.transport.get("/models", lambda d: {m["id"]: m for m in d["data"]}, "a model list",
                                         permanent=False)
        if reply.value is not None:
            return dict(reply.value)
        if reply.status in (404, 405):
            return None
        if reply.status in (401, 403):
            raise RemoteFailure(f"openai endpoint {self.transport.redact(self.base_url)}: HTTP {reply.status} "
                                f"({reply.error})")
        raise RemoteFailure(f"openai endpoint {self.transport.redact(self.base_url)}: no model list ({reply.error})")

    def _variants(self, served: dict[str, dict[str, Any]] | None) -> tuple[list[VariantInfo], dict[str, str]]:
        from harness.models.loading import variant_labels

        spec = self.spec
        for flag, name in [("--model", spec.model)] + [("--adapter", a) for a in spec.adapters]:
            if served is not None and name not in served:
                listed = ", ".join(sorted(served)[:20]) or "none"
                raise HarnessError(f"{flag} {name}: not served at {self.base_url} (it serves: {listed})")

        def about(name: str) -> dict[str, Any]:
            m = (served or {}).get(name, {})
            return {"id": m.get("id", name), "root": m.get("root"), "parent": m.get("parent")}

        base = {"backend": "openai", "base_url": self.base_url, "base": spec.model, "kind": "causal",
                "endpoint": self.endpoint or "auto"}
        names: list[str | None] = ([None] if spec.with_base or not spec.adapters else []) + list(spec.adapters)
        out, served_as = [], {}
        for label, name in zip(variant_labels(spec), names):
            if name is None:
                ident = {**base, **about(spec.model)}
            else:
                ident = {**base, "base_root": about(spec.model)["root"], "adapter": name, **about(name)}
            out.append(VariantInfo(label, ident, None))
            served_as[label] = name or spec.model
        return out, served_as

    async def _probe(self) -> Capabilities:
        """One echo request (two for servers that refuse max_tokens=0): can it score prompts, or complete at all?"""
        caps = Capabilities()
        why = ""
        for max_tokens in (0, 1):
            body = {"model": self.spec.model, "prompt": PROBE_PROMPT, "max_tokens": max_tokens, "echo": True,
                    "logprobs": 1, "temperature": 0}
            reply = await self.transport.post("/completions", body, _probe_parse, permanent=False)
            if reply.value is not None:
                caps.ll_max_tokens, caps.fingerprint = max_tokens, reply.value[1]
                caps.loglikelihood = reply.value[0]
                if not caps.loglikelihood:
                    caps.why = "its completions come back without prompt log-probs (echo with logprobs)"
                return caps
            self._raise_auth(reply)
            if reply.status is None or reply.status >= 500 or reply.status in (408, 429):
                raise RemoteFailure(f"openai endpoint {self.transport.redact(self.base_url)}/completions: {reply.error}")
            why = f"HTTP {reply.status}: {reply.error}"
        plain = await self.transport.post("/completions", {"model": self.spec.model, "prompt": PROBE_PROMPT,
                                                            "max_tokens": 1}, lambda d: d["choices"][0]["text"],
                                          permanent=False)
        self._raise_auth(plain)
        caps.loglikelihood = False
        caps.completions = plain.value is not None
        caps.why = why if caps.completions else f"HTTP {plain.status}: {plain.error}"
        return caps

    def _raise_auth(self, reply: Reply) -> None:
        if reply.status in (401, 403):
            raise RemoteFailure(f"openai endpoint {self.transport.redact(self.base_url)}: HTTP {reply.status} "
                                f"({reply.error})")

    # --- checks ----------------------------------------------------------------------------------
    def check(self, task: str, requests: Sequence[Request]) -> None:
        """A one-line error, before the run, for a task whose requests this endpoint cannot answer."""
        for r in requests:
            self._check_request(r, task)

    def _check_request(self, r: Request, task: str | None) -> None:
        where = f"task {task}" if task else "a request"
        url = self.base_url
        if isinstance(r, LogLikelihood):
            if not self.caps.loglikelihood:
                raise HarnessError(f"--backend openai: {where} needs loglikelihood requests, and {url} cannot return "
                                   f"prompt log-probs for {self.spec.model} ({self.caps.why}); use a server that can "
                                   "(vllm serve), or another backend")
            if r.context == "":
                raise HarnessError(f"--backend openai: {where} asks a loglikelihood with an empty context; the endpoint "
                                   "cannot score a first token without the model's BOS token (use --backend hf)")
        elif isinstance(r, Generate):
            if r.num_beams > 1 or r.no_repeat_ngram_size:
                flag = "--num-beams" if r.num_beams > 1 else "--no-repeat-ngram-size"
                raise HarnessError(f"{flag}: the openai backend cannot send it ({where} generates); the OpenAI API "
                                   "has no beam search or n-gram blocking")
            chat = self._uses_chat(r)
            if not chat and not self.caps.completions:
                raise HarnessError(f"--backend openai: {where} sends plain prompts, which need /v1/completions, and {url} "
                                   f"does not complete them for {self.spec.model} ({self.caps.why}); pass "
                                   "--backend-option endpoint=chat to send each as one user message")
            if chat and self.endpoint == "completions":
                raise HarnessError(f"--backend-option endpoint=completions: {where} sends chat messages, which need "
                                   "the chat endpoint (leave endpoint unset, or endpoint=chat)")
        else:
            raise HarnessError(f"--backend openai: {where} needs {r.kind} requests; this backend answers generate and "
                               "loglikelihood requests only")

    def _uses_chat(self, r: Generate) -> bool:
        return self.endpoint == "chat" or (self.endpoint is None and not isinstance(r.prompt, str))

    # --- answering -------------------------------------------------------------------------------
    def model_for(self, label: str) -> VariantModel:
        ident = next(v.identity for v in self.variants if v.label == label)
        return VariantModel(self, label, ident)

    def answer(self, kind: str, items: list[tuple[str, Request]]) -> list[Answer]:
        """Every (variant, request) answered concurrently, in order; any failure raises RequestsFailed (exit 3)."""
        out: list[Answer] = [None] * len(items)

        def keep(i: int, a: Answer) -> None:
            out[i] = a

        self.answer_each(items, keep)
        return out

    def answer_each(self, items: Sequence[tuple[str, Request]], done: Callable[[int, Answer], None]) -> None:
        """Every (variant, request) sent at once, `concurrency` in flight (the transport's bound), done(i, answer)
        called the moment each arrives so the caller can store it. Requests that failed for good do not stop the
        others: once all have finished, RequestsFailed (exit 3) says how many failed and why."""
        self.variants, self.caps  # noqa: B018  # learnt before the event loop runs (each fetch runs the loop itself)
        for _, r in items:
            self._check_request(r, None)
        failed: Counter[str] = Counter()

        async def one(i: int, label: str, r: Request) -> None:
            a = await self._one(self._served[label], r)
            if isinstance(a, Failed):
                failed[a.error] += 1
            else:
                self.answered += 1
                done(i, a)

        self._run(self._gather([one(i, label, r) for i, (label, r) in enumerate(items)]))
        if failed:
            n = sum(failed.values())
            why = "; ".join(f"{k} ({c}x)" for k, c in failed.most_common(3))
            raise RequestsFailed(f"{n} of {len(items)} requests failed at {self.base_url}: {why}; the {self.answered} "
                                 "answers of this run are in the store, pass --resume to ask only for the others")

    async def _gather(self, coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # a permanent refusal: stop the others before the error leaves
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _one(self, model: str, r: Request) -> Answer:
        if isinstance(r, LogLikelihood):
            return await self._loglikelihood(model, r)
        assert isinstance(r, Generate)
        return await self._generate(model, r)

    async def _generate(self, model: str, r: Generate) -> list[str] | Failed:
        chat = self._uses_chat(r)
        body: dict[str, Any] = {"model": model, "max_tokens": r.max_new_tokens, "temperature": r.temperature,
                                "top_p": r.top_p, "n": r.n}
        if chat:
            msgs = [("user", r.prompt)] if isinstance(r.prompt, str) else list(r.prompt)
            body["messages"] = [{"role": role, "content": c} for role, c in msgs]
        else:
            body["prompt"] = r.prompt
        if r.stop:
            body["stop"] = server_stops(r.stop)
        if r.temperature > 0:
            body["seed"] = r.seed
        path = "/chat/completions" if chat else "/completions"
        reply = await self.transport.post(path, body, lambda d: _texts(d, r.n, chat),
                                          expect="a chat completion" if chat else "a completion")
        if reply.value is None:
            return Failed(str(reply.error))
        return [redact_secrets(cut_at_stop(t, r.stop), self.transport.secrets) for t in reply.value]

    async def _loglikelihood(self, model: str, r: LogLikelihood) -> tuple[float, bool] | Failed:
        ctx, cont = split_pair(r.context, r.continuation)
        prompt = ctx + cont
        body = {"model": model, "prompt": prompt, "max_tokens": self.caps.ll_max_tokens, "echo": True, "logprobs": 1,
                "temperature": 0}
        reply = await self.transport.post("/completions", body, lambda d: continuation_score(d, prompt, len(ctx)),
                                          expect="a completion with prompt log-probs")
        return Failed(str(reply.error)) if reply.value is None else reply.value

    # --- reporting -------------------------------------------------------------------------------
    def status(self) -> str:
        """Requests per second, retries and failures so far (for the runner's progress bar)."""
        return self.transport.status()

    def describe(self) -> dict[str, Any]:
        import httpx

        return {"name": "openai", "base_url": self.base_url, "endpoint": self.endpoint or "auto",
                "server": self.caps.fingerprint, "loglikelihood": self.caps.loglikelihood, "httpx": httpx.__version__}

    def close(self) -> None:
        if self._loop.is_closed():
            return
        pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
        for t in pending:  # left by Ctrl-C in the middle of a batch
            t.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self.transport.aclose())
        self._loop.close()


def _texts(data: Any, n: int, chat: bool) -> list[str] | None:
    """The n choices' texts in index order, each with the stop string the server cut off put back (vLLM's
    stop_reason) so the local cut sees what the hf backend sees; None if the reply is not n completions."""
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
    if len(choices) != n:
        return None
    out = []
    for c in choices:
        text = c["message"]["content"] if chat else c["text"]
        if not isinstance(text, str):
            return None
        reason = c.get("stop_reason")
        if c.get("finish_reason") == "stop" and isinstance(reason, str):
            text += reason
        out.append(text)
    return out


def _probe_parse(data: Any) -> tuple[bool, str | None] | None:
    """(prompt log-probs came back, system fingerprint) for a completions reply; None when it is not one."""
    choice = data["choices"][0]
    if not isinstance(choice.get("text"), str):
        return None
    lp = choice.get("logprobs") or {}
    vals = lp.get("token_logprobs") or []
    ok = bool(lp.get("text_offset")) and len(vals) > 1 and all(isinstance(v, float) for v in vals[1:])
    fingerprint = data.get("system_fingerprint")
    return ok, fingerprint if isinstance(fingerprint, str) else None


def check_spec(spec: Any, opts: dict[str, Any]) -> None:
    """Options that cannot apply to a served model are errors, not silence; bad option values name the option."""
    url = str(opts["base_url"])
    if not url.startswith(("http://", "https://")) or not urlparse(url).hostname:
        raise HarnessError(f"--backend-option base_url={url}: expected an http:// or https:// URL, "
                           "e.g. http://127.0.0.1:8000/v1")
    for key in ("concurrency", "max_attempts"):
        if int(opts[key]) < 1:
            raise HarnessError(f"--backend-option {key}={opts[key]}: must be > 0")
    if float(opts["timeout"]) <= 0:
        raise HarnessError(f"--backend-option timeout={opts['timeout']}: must be > 0")
    if float(opts["backoff"]) < 0:
        raise HarnessError(f"--backend-option backoff={opts['backoff']}: must be >= 0")
    if opts.get("endpoint") not in (None, "completions", "chat"):
        raise HarnessError(f"--backend-option endpoint={opts['endpoint']}: use completions or chat")
    if spec.kind not in ("auto", "causal"):
        raise HarnessError(f"--model-kind {spec.kind}: the openai backend serves causal language models only")
    for flag, used in (("--load-in-4bit", spec.load_in_4bit), ("--load-in-8bit", spec.load_in_8bit),
                       ("--revision", spec.revision is not None), ("--trust-remote-code", spec.trust_remote_code)):
        if used:
            raise HarnessError(f"{flag}: the openai backend does not load the model (the server does); start the "
                               "server with what you need instead")


class OpenAIBackend(Backend):
    name = "openai"
    answers = ("generate", "loglikelihood")
    requires = ("httpx",)
    local_adapters = False  # --adapter names a LoRA module the server has loaded, not a directory here
    summary = "an OpenAI-compatible endpoint (vllm serve, hosted APIs): served base and LoRA modules, key from the env"
    options = {
        "base_url": BackendOption(str, "the endpoint, e.g. http://127.0.0.1:8000/v1", DEFAULT_BASE_URL),
        "api_key_env": BackendOption(str, "environment variable holding the API key (the key is never written)",
                                     "OPENAI_API_KEY"),
        "concurrency": BackendOption(int, "requests in flight (also the batch the store commits)", 8),
        "timeout": BackendOption(float, "seconds per attempt", 120.0),
        "max_attempts": BackendOption(int, "attempts per request (429, 5xx, timeouts, resets, bad replies)", 6),
        "backoff": BackendOption(float, "backoff base in seconds (doubles per retry, jittered; Retry-After wins)", 1.0),
        "endpoint": BackendOption(str, "completions or chat (default: completions for plain prompts, chat for messages)"),
    }

    def open(self, spec: Any) -> OpenAISession:
        return OpenAISession(spec, {**self.parse_options({}), **spec.backend_options})
