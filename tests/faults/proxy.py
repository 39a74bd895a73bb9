"""A fault-injecting proxy in front of a real judge server: it forwards every request, except those its plan says
to answer otherwise (a 429 with Retry-After, a 500, a hang past the client's timeout, an answer emptied or stripped
of its logprobs), and counts what it was sent. It never stands in for the server: every answer it gives that is not
a fault is the real server's, or the real server's with its text rewritten by `answer`, for a test that needs the
judge to have written a given score (the tiny random judge never writes one).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class FaultProxy:
    """`plan` maps the n-th chat-completion request (from 1) to a fault: "429", "500", "hang", "empty",
    "filtered" (a content-filter block) or "no-logprobs"; `always` applies one to every request. `answer`, given
    a chat-completion request's body (parsed), returns the text to put in place of the server's answer, or None to
    leave it: the request still goes to the server, and its answer (usage, finish reason) is kept but for the text.
    Each request rewritten is in `rewritten` (its number, the new text)."""

    def __init__(self, upstream: str, plan: dict[int, str] | None = None, always: str | None = None,
                 answer: Callable[[dict], str | None] | None = None):
        self.upstream, self.plan, self.always, self.answer = upstream.rstrip("/"), dict(plan or {}), always, answer
        self.chats, self.faults, self.rewritten, self.lock = 0, [], [], threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._forward(self, None)

            def do_POST(self):
                proxy._forward(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, handler, body: bytes | None) -> None:
        fault, number = None, None
        if handler.path.endswith("/chat/completions"):
            with self.lock:
                self.chats += 1
                number = self.chats
                fault = self.plan.get(self.chats, self.always)
                if fault:
                    self.faults.append((self.chats, fault))
        if fault in ("429", "500"):
            headers = {"Retry-After": "0"} if fault == "429" else {}
            return _reply(handler, int(fault), {"error": {"message": f"injected {fault}"}}, headers)
        if fault == "hang":
            time.sleep(30)
            return _reply(handler, 504, {"error": {"message": "injected hang"}})
        request = urllib.request.Request(self.upstream + handler.path, data=body, method=handler.command,
                                         headers={k: v for k, v in handler.headers.items()
                                                  if k.lower() in ("content-type", "authorization")})
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, data = e.code, e.read()
        if fault in ("empty", "filtered", "no-logprobs") and status == 200:
            data = json.dumps(_spoil(json.loads(data), fault)).encode()
        elif number is not None and self.answer and status == 200:
            data = self._rewrite(number, json.loads(body), data)
        _reply(handler, status, data)

    def _rewrite(self, number: int, request: dict, data: bytes) -> bytes:
        text = self.answer(request)
        if text is None:
            return data
        response = json.loads(data)
        for choice in response.get("choices", []):
            choice["message"]["content"] = text
        with self.lock:
            self.rewritten.append((number, text))
        return json.dumps(response).encode()


def _spoil(response: dict, fault: str) -> dict:
    for choice in response.get("choices", []):
        if fault == "no-logprobs":
            choice["logprobs"] = None
        else:
            choice["message"]["content"], choice["logprobs"] = "", None
            if fault == "filtered":
                choice["finish_reason"] = "content_filter"
    return response


def _reply(handler, status: int, payload, headers: dict | None = None) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)
