"""A real OpenAI-compatible judge on 127.0.0.1 for tests and the bench: deterministic verdicts, optional faults.

Judging rule (so tests know the right verdict without a model): a reply is worth its word count.
Single grading returns [[clip(words, 1, 10)]], multi-answer grading clip(words, 1, 9) per answer,
pairwise the longer last reply ([[tie]] on equal counts). With `position_bias` it answers [[A]] whenever
the two counts differ by at most one, the way real judges favour the first answer.

Fault mode, decided by a hash of the request body so it is the same in every run and at any concurrency:
the first `fault_attempts` attempts of a share of bodies get 429 (with Retry-After), 500, or a reply
slower than the client's timeout; a share of bodies always get a reply without a verdict (malformed);
and a share always get 500 (dead) to check that retries stop. Counters record every request.

With `echo_auth` the server repeats the Authorization header it got, the way real endpoints quote a
rejected key: in the 401 body ("Incorrect API key provided: Bearer sk-...") and at the end of every reply.

It is also a model server for the openai backend: GET /v1/models lists `models` ({id: parent}), and
/v1/completions answers from a fixed table, computed from the prompt so any test knows it: generation is
`completion_text(model, prompt, index, seed)` cut at the first stop string found in list order (reported in
stop_reason, as vLLM does); `echo` with `logprobs` scores the prompt with `word_tokens` (words with their leading
spaces) and `token_logprob(model, prefix)`, with an alternative top token that beats the real one on a share of
positions. Two more faults for completions: `preset` (the connection is reset before any reply) and `ptrunc` (a
200 whose JSON is cut in half). `answered` counts, per body, the replies that were not faults: a client that
retries correctly makes each body's count exactly 1.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_BLOCK = re.compile(r"^=== (.+?) ===\n(.*?)\n=== end of \1 ===$", re.DOTALL | re.MULTILINE)


def last_reply(block: str) -> str:
    return block.rsplit("[Assistant]\n", 1)[-1]


def words(text: str) -> int:
    return len(text.split())


def judge_text(prompt: str, position_bias: bool = False) -> str:
    blocks = {title: body for title, body in _BLOCK.findall(prompt)}
    if "Assistant A" in blocks and "Assistant B" in blocks:
        wa, wb = words(last_reply(blocks["Assistant A"])), words(last_reply(blocks["Assistant B"]))
        if position_bias and abs(wa - wb) <= 1:
            v = "A"
        else:
            v = "A" if wa > wb else ("B" if wb > wa else "tie")
        return f"A has {wa} words and B has {wb}.\n[[{v}]]"
    answers = sorted((int(t.split()[1]), b) for t, b in blocks.items() if re.fullmatch(r"Answer \d+", t))
    if answers:
        lines = [f"Answer {i}: [[{min(9, max(1, words(last_reply(b))))}]]" for i, b in answers]
        return "Compared.\n" + "\n".join(lines)
    if "Conversation" in blocks:
        n = words(last_reply(blocks["Conversation"]))
        return f"The reply has {n} words.\n[[{min(10, max(1, n))}]]"
    return "I cannot tell what to grade."


def _unit(blob: bytes, salt: str) -> float:
    return int(hashlib.sha256(salt.encode() + blob).hexdigest()[:8], 16) / 0x100000000


_WORD = re.compile(r"\s*\S+|\s+$")


def word_tokens(text: str) -> list[tuple[int, str]]:
    """(offset, token) pairs: each word with the whitespace before it; trailing whitespace is its own token."""
    return [(m.start(), m.group()) for m in _WORD.finditer(text)]


def token_logprob(model: str, prefix: str) -> float:
    """The log-prob of the prefix's last token given the rest: a fixed function of model and text."""
    return -round(0.25 + 4 * _unit(prefix.encode(), f"lp|{model}|"), 6)


def beaten(model: str, prefix: str) -> bool:
    """Whether another token is likelier than the prefix's last one (is_greedy false there)."""
    return _unit(prefix.encode(), f"top|{model}|") < 0.3


def completion_text(model: str, prompt: str, index: int = 0, seed: int | None = None) -> str:
    h = int(hashlib.sha256(f"{model}|{prompt}|{index}|{seed}".encode()).hexdigest()[:8], 16)
    return f" {model} thinks it is {h % 97}.\n\nQuestion: and then {h % 13} more"


def echo_logprobs(model: str, prompt: str) -> dict[str, Any]:
    toks = word_tokens(prompt)
    lps: list[float | None] = [None]
    tops: list[dict[str, float] | None] = [None]
    for off, tok in toks[1:]:
        prefix = prompt[: off + len(tok)]
        lp = token_logprob(model, prefix)
        lps.append(lp)
        alt = lp + 0.5 if beaten(model, prefix) else lp - 0.5
        tops.append({tok: lp, " <alt>" if tok != " <alt>" else " <alt2>": alt})
    return {"text_offset": [o for o, _ in toks], "token_logprobs": lps, "tokens": [t for _, t in toks],
            "top_logprobs": tops}


def cut_first_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """vLLM's stop handling: the first stop string (in list order) found ends the text; it is reported, not kept."""
    for s in stops:
        j = text.find(s)
        if j != -1:
            return text[:j], s
    return text, None


class JudgeServer:
    """`with JudgeServer(...) as srv:` serves on srv.url (…/v1) from a background thread."""

    def __init__(self, latency: float = 0.0, p429: float = 0.0, p500: float = 0.0, pslow: float = 0.0,
                 pmalformed: float = 0.0, pdead: float = 0.0, fault_attempts: int = 1, retry_after: float = 0.01,
                 slow_delay: float = 0.5, position_bias: bool = False, api_key: str | None = None,
                 echo_auth: bool = False, preset: float = 0.0, ptrunc: float = 0.0,
                 models: dict[str, str | None] | None = None, table: dict[str, str] | None = None,
                 completions: bool = True, dead_prompts: tuple[str, ...] = (), echo_needs_a_token: bool = False
                 ) -> None:
        self.latency, self.p429, self.p500, self.pslow = latency, p429, p500, pslow
        self.pmalformed, self.pdead, self.fault_attempts = pmalformed, pdead, fault_attempts
        self.retry_after, self.slow_delay, self.position_bias, self.api_key = retry_after, slow_delay, position_bias, api_key
        self.echo_auth = echo_auth
        self.preset, self.ptrunc = preset, ptrunc
        self.models = models if models is not None else {"tiny": None}
        self.table = table or {}  # prompt -> generated text, instead of completion_text
        self.dead_prompts = dead_prompts  # a completion whose prompt holds one of these always gets 500
        self.completions = completions  # False: /v1/completions is refused, as hosted chat-only APIs refuse it
        self.echo_needs_a_token = echo_needs_a_token  # True: echo with max_tokens=0 is a 400, as some servers answer
        self.inflight = self.max_inflight = 0  # completion requests being handled now / at most at once
        self.answered: dict[str, int] = {}  # body hash -> replies that were not faults
        self.faults: dict[str, int] = {}  # fault name -> times sent
        self.bodies: dict[str, dict[str, Any]] = {}  # body hash -> the request, for tests to read
        self.gets = 0
        self.lock = threading.Lock()
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.attempts: dict[str, int] = {}  # body hash -> requests seen
        self.auth_seen: set[str] = set()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> JudgeServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # headers and body go out in separate writes: without NODELAY, Nagle adds ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - /v1/models, or /stats: counters for a server in another process
                if self.path.endswith("/models"):
                    return server._list_models(self)
                with server.lock:
                    stats = {"requests": server.requests, "by_status": server.by_status}
                    body = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.inflight -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a reset connection (the fault) or a client that gave up: not worth a traceback

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self.url

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reset_counts(self) -> None:
        with self.lock:
            self.requests = 0
            self.gets = 0
            self.by_status.clear()
            self.attempts.clear()
            self.answered.clear()
            self.bodies.clear()
            self.faults.clear()

    # --- one request -------------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
              ) -> None:
        with self.lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1
        body = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _authorised(self, h: BaseHTTPRequestHandler) -> bool:
        """Whether the Authorization header carries the key; a 401 (echoing what it got, with echo_auth) if not."""
        auth = h.headers.get("Authorization", "")
        with self.lock:
            self.auth_seen.add(auth)
        if self.api_key is None or auth == f"Bearer {self.api_key}":
            return True
        echo = f": Incorrect API key provided: {auth}. Find your key at https://example.invalid" if self.echo_auth else ""
        self._send(h, 401, {"error": {"message": f"invalid api key{echo}", "type": "invalid_request_error"}})
        return False

    def _list_models(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.gets += 1
        if not self._authorised(h):
            return
        data = [{"id": m, "object": "model", "root": f"/models/{m}", "parent": parent} for m, parent in self.models.items()]
        self._send(h, 200, {"object": "list", "data": data})

    def _fault(self, h: BaseHTTPRequestHandler, raw: bytes, attempt: int, completions: bool) -> str | None:
        """This attempt's planned fault: "sent" (a fault reply went out), "slow" (slept past the client's timeout;
        the reply follows but is not counted as answered), or None."""
        if _unit(raw, "dead") < self.pdead or (self.dead_prompts and any(d in raw.decode() for d in self.dead_prompts)):
            self._send(h, 500, {"error": {"message": "permanently broken"}})
            return "sent"
        if attempt >= self.fault_attempts:
            return None
        u = _unit(raw, "fault")
        edges = [self.p429, self.p500, self.pslow] + ([self.preset, self.ptrunc] if completions else [])
        bounds = [sum(edges[: i + 1]) for i in range(len(edges))]
        name = next((n for n, b in zip(("429", "500", "slow", "reset", "truncated"), bounds) if u < b), None)
        if name is not None:
            with self.lock:
                self.faults[name] = self.faults.get(name, 0) + 1
        if u < bounds[0]:
            self._send(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": f"{self.retry_after:g}"})
        elif u < bounds[1]:
            self._send(h, 500, {"error": {"message": "server error"}})
        elif u < bounds[2]:
            time.sleep(self.slow_delay)
            return "slow"
        elif completions and u < bounds[3]:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()  # RST: the client sees a reset connection, no reply
            h.close_connection = True
        elif completions and u < bounds[4]:
            self._send_raw(h, 200, json.dumps(self._completion(json.loads(raw), "")).encode()[:200])
        else:
            return None
        return "sent"

    def _send_raw(self, h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        with self.lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        if h.path.endswith("/reset"):
            self.reset_counts()
            return self._send(h, 200, {})
        key = hashlib.sha256(raw).hexdigest()
        auth = h.headers.get("Authorization", "")
        with self.lock:
            self.requests += 1
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
            self.auth_seen.add(auth)
        completions = h.path.endswith("/v1/completions")
        if not (completions or h.path.endswith("/chat/completions")):
            return self._send(h, 404, {"error": {"message": f"no route {h.path}"}})
        if not self._authorised(h):
            return
        if completions and not self.completions:
            msg = "This is a chat model and not supported in the v1/completions endpoint. Did you mean v1/chat/completions?"
            return self._send(h, 404, {"error": {"message": msg, "type": "invalid_request_error"}})
        if self.latency:
            time.sleep(self.latency)
        fault = self._fault(h, raw, attempt, completions)
        if fault == "sent":
            return
        req = json.loads(raw)
        with self.lock:
            self.bodies[key] = req
            if fault is None:
                self.answered[key] = self.answered.get(key, 0) + 1
        if not completions:
            return self._send(h, 200, self._chat(req, raw, auth))
        if req.get("model") not in self.models:
            return self._send(h, 404, {"error": {"message": f"The model `{req.get('model')}` does not exist."}})
        if self.echo_needs_a_token and req.get("echo") and req.get("max_tokens") == 0:
            return self._send(h, 400, {"error": {"message": "max_tokens must be at least 1, got 0."}})
        self._send(h, 200, self._completion(req, auth))

    def _completion(self, req: dict[str, Any], auth: str) -> dict[str, Any]:
        model, prompt = str(req["model"]), str(req["prompt"])
        n = int(req.get("n") or 1)
        choices = []
        for i in range(n):
            if req.get("echo"):
                text, reason, logprobs = prompt, None, echo_logprobs(model, prompt) if req.get("logprobs") else None
                if req.get("max_tokens") and logprobs is not None:  # the generated token follows the prompt's
                    text += " gen"
                    logprobs["text_offset"].append(len(prompt))
                    logprobs["token_logprobs"].append(-0.1)
                    logprobs["tokens"].append(" gen")
                    logprobs["top_logprobs"].append({" gen": -0.1})
            else:
                seed = req.get("seed") if float(req.get("temperature") or 0) > 0 else None
                full = self.table.get(prompt) or completion_text(model, prompt, i if seed is not None else 0, seed)
                text, reason = cut_first_stop(full, list(req.get("stop") or []))
                logprobs = None
            if self.echo_auth:
                text += f" (authorised with Authorization: {auth})"
            choices.append({"index": i, "text": text, "logprobs": logprobs,
                            "finish_reason": "stop" if reason else "length", "stop_reason": reason})
        return {"id": "cmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12], "object": "text_completion",
                "model": model, "choices": choices, "system_fingerprint": "judge-server-1",
                "usage": {"prompt_tokens": len(word_tokens(prompt)), "completion_tokens": 8}}

    def _chat(self, req: dict[str, Any], raw: bytes, auth: str) -> dict[str, Any]:
        prompt = "\n".join(m["content"] for m in req["messages"] if m["role"] == "user")
        if _unit(raw, "malformed") < self.pmalformed:
            text = "Both replies have merits; I will not pick one."
        else:
            text = judge_text(prompt, self.position_bias)
        if self.echo_auth:
            text += f"\n(request authorised with Authorization: {auth})"
        usage = {"prompt_tokens": sum(len(m["content"]) for m in req["messages"]) // 4, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        key = hashlib.sha256(raw).hexdigest()
        return {"id": "chatcmpl-" + key[:12], "object": "chat.completion", "model": req.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage}


def main() -> None:
    """Serve in the foreground (the bench runs it in its own process so it does not share the client's GIL)."""
    import argparse

    ap = argparse.ArgumentParser(description="Deterministic OpenAI-compatible judge on 127.0.0.1.")
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    srv = JudgeServer(latency=args.latency)
    print(srv.start(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
