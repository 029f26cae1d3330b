"""A scripted OpenAI-compatible chat-completions server on loopback, for tests.

Runs stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` (port 0, so the OS picks a free one) in a
background thread. It serves ``POST /v1/chat/completions`` (and ``/chat/completions``), records
every request it receives, and answers from a script::

    with OpenAIServer() as server:
        server.fail(429, times=2, retry_after=0.1)   # two rate limits, then ...
        server.reply('{"label": "spam"}', prompt_tokens=12, completion_tokens=3)
        ...  # point a client at server.base_url
        assert len(server.requests) == 3
        assert server.requests[-1].body["response_format"]["type"] == "json_schema"

Scripted steps are used first-in first-out; when the queue is empty, ``responder`` (a function of
the request body returning the answer text, or a :class:`Reply`) answers. A stalled step sleeps
before answering, and is woken when the server stops, so a test never waits for it.

``latency_s`` delays every answer (a provider's think time); ``api_key`` makes the server answer
401 to a request without ``Authorization: Bearer <api_key>``, as OpenAI does. A server may also
run in its own process (``python tests/support/openai_server.py --port-file F``: see ``main``),
counting requests per case so a test can kill its client and count what a resume re-sends.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OpenAIServer", "Received", "Reply"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a successful completion, an HTTP error, or either after a stall."""

    text: str = "ok"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    status: int = 200
    retry_after: float | None = None
    """Sent as the ``Retry-After`` header (seconds) when set."""
    error_body: dict[str, Any] | None = None
    stall_s: float = 0.0
    """Seconds to wait before answering (to provoke client timeouts)."""
    finish_reason: str = "stop"
    model: str | None = None
    """The ``model`` field of the answer; the requested model when None."""
    usage_extra: dict[str, Any] | None = None
    """More ``usage`` fields (e.g. ``{"cost": 0.01}``, a provider-reported cost)."""


@dataclass(frozen=True)
class Received:
    """A request as the server saw it."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    at: float = 0.0
    """``time.monotonic()`` when the request arrived (to check retry backoff)."""

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class OpenAIServer:
    """Scripted OpenAI chat-completions server; a context manager (``start``/``stop``)."""

    def __init__(self, responder: Callable[[dict[str, Any]], str | Reply] | None = None, *,
                 latency_s: float = 0.0, api_key: str | None = None):
        self.responder = responder or (lambda body: Reply())
        self.latency_s, self.api_key = latency_s, api_key
        self.requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------------

    def reply(self, text: str = "ok", *, times: int = 1, **kwargs: Any) -> OpenAIServer:
        """Queue ``times`` successful answers with ``text`` (and Reply fields in kwargs)."""
        return self.push(Reply(text=text, **kwargs), times=times)

    def fail(self, status: int, *, times: int = 1, retry_after: float | None = None,
             message: str | None = None, code: str | None = None) -> OpenAIServer:
        """Queue ``times`` error answers with HTTP ``status`` in OpenAI's error shape."""
        body = {"error": {"message": message or f"scripted HTTP {status}",
                          "type": _error_type(status), "param": None, "code": code}}
        return self.push(Reply(status=status, retry_after=retry_after, error_body=body),
                         times=times)

    def stall(self, seconds: float, *, times: int = 1, text: str = "late") -> OpenAIServer:
        """Queue ``times`` answers that arrive only after ``seconds``."""
        return self.push(Reply(text=text, stall_s=seconds), times=times)

    def push(self, reply: Reply, *, times: int = 1) -> OpenAIServer:
        with self._lock:
            self._script.extend([reply] * times)
        return self

    def clear(self) -> None:
        """Forget the script and the recorded requests."""
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        answer = self.responder(body)
        return answer if isinstance(answer, Reply) else Reply(text=str(answer))

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, the ``api_base`` for OpenAI clients."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def start(self) -> OpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False  # a stalled handler must not hold up stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wake stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answering ---------------------------------------------------------------------------

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-test-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": reply.finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": reply.completion_tokens,
                      "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                      **(reply.usage_extra or {})},
        }


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _send(self, status: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            path = self.path.split("?", 1)[0]
            received = Received(path=path, body=body,
                                headers={k.lower(): v for k, v in self.headers.items()},
                                at=time.monotonic())
            with server._lock:
                server.requests.append(received)
            if path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(404, {"error": {"message": f"no route {path}",
                                           "type": "invalid_request_error", "code": None}})
                return
            if server.api_key is not None and \
                    received.authorization != f"Bearer {server.api_key}":
                self._send(401, {"error": {"message": "Incorrect API key provided",
                                           "type": "invalid_request_error",
                                           "code": "invalid_api_key"}})
                return
            reply = server._next(body)
            wait = reply.stall_s + server.latency_s
            if wait and server._stopping.wait(wait):
                return  # server stopping: drop the request
            headers = {}
            if reply.retry_after is not None:
                headers["Retry-After"] = f"{reply.retry_after:g}"
            if reply.status != 200:
                self._send(reply.status, reply.error_body or {"error": {
                    "message": f"scripted HTTP {reply.status}",
                    "type": _error_type(reply.status), "code": None}}, headers)
                return
            self._send(200, server._completion(body, reply), headers)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve in this process until killed: ``--port-file`` receives the port once listening;
    every request's last user message is appended to ``--log`` (one line each), so a test can
    count what was sent per case across client processes."""
    import argparse
    import os

    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--answer", default='{"label": "card_arrival", "confidence": 0.9}')
    args = ap.parse_args(argv)
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def responder(body: dict[str, Any]) -> str:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
        with lock:
            log.write(json.dumps(content) + "\n")
            log.flush()
        return args.answer

    server = OpenAIServer(responder, latency_s=args.latency).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.port))
    os.replace(tmp, args.port_file)
    threading.Event().wait()


if __name__ == "__main__":
    main()
