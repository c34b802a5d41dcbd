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
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
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


class JudgeServer:
    """`with JudgeServer(...) as srv:` serves on srv.url (…/v1) from a background thread."""

    def __init__(self, latency: float = 0.0, p429: float = 0.0, p500: float = 0.0, pslow: float = 0.0,
                 pmalformed: float = 0.0, pdead: float = 0.0, fault_attempts: int = 1, retry_after: float = 0.01,
                 slow_delay: float = 0.5, position_bias: bool = False, api_key: str | None = None,
                 echo_auth: bool = False) -> None:
        self.latency, self.p429, self.p500, self.pslow = latency, p429, p500, pslow
        self.pmalformed, self.pdead, self.fault_attempts = pmalformed, pdead, fault_attempts
        self.retry_after, self.slow_delay, self.position_bias, self.api_key = retry_after, slow_delay, position_bias, api_key
        self.echo_auth = echo_auth
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

            def do_GET(self) -> None:  # noqa: N802 - /stats: counters, for a server run in another process
                with server.lock:
                    stats = {"requests": server.requests, "by_status": server.by_status}
                    body = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

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
            self.by_status.clear()
            self.attempts.clear()

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

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        if h.path.endswith("/reset"):
            self.reset_counts()
            return self._send(h, 200, {})
        key = hashlib.sha256(raw).hexdigest()
        with self.lock:
            self.requests += 1
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
            self.auth_seen.add(h.headers.get("Authorization", ""))
        if not h.path.endswith("/chat/completions"):
            return self._send(h, 404, {"error": {"message": f"no route {h.path}"}})
        auth = h.headers.get("Authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            echo = f": Incorrect API key provided: {auth}. Find your key at https://example.invalid" if self.echo_auth else ""
            return self._send(h, 401, {"error": {"message": f"invalid api key{echo}", "type": "invalid_request_error"}})
        if self.latency:
            time.sleep(self.latency)
        if _unit(raw, "dead") < self.pdead:
            return self._send(h, 500, {"error": {"message": "permanently broken"}})
        if attempt < self.fault_attempts:
            u = _unit(raw, "fault")
            if u < self.p429:
                return self._send(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": f"{self.retry_after:g}"})
            if u < self.p429 + self.p500:
                return self._send(h, 500, {"error": {"message": "server error"}})
            if u < self.p429 + self.p500 + self.pslow:
                time.sleep(self.slow_delay)
        req = json.loads(raw)
        prompt = "\n".join(m["content"] for m in req["messages"] if m["role"] == "user")
        if _unit(raw, "malformed") < self.pmalformed:
            text = "Both replies have merits; I will not pick one."
        else:
            text = judge_text(prompt, self.position_bias)
        if self.echo_auth:
            text += f"\n(request authorised with Authorization: {auth})"
        usage = {"prompt_tokens": sum(len(m["content"]) for m in req["messages"]) // 4, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._send(h, 200, {"id": "chatcmpl-" + key[:12], "object": "chat.completion", "model": req.get("model"),
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}], "usage": usage})


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
