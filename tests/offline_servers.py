"""Local stand-ins for the outside world in the real-benchmark tests, all on 127.0.0.1.

* `MessagesAPIServer`: a small server speaking Anthropic's Messages API
  (`POST /v1/messages`, plain JSON or server-sent events), so that the shipped grader
  configuration (`anthropic/claude-3-7-sonnet-20250219`) runs unchanged against it
  through `ANTHROPIC_BASE_URL`. It grades honestly with `offline_data.respond`.
* `TrapProxy`: set as HTTP(S)_PROXY for the run under test; every request that would
  have left the machine arrives here instead, is recorded and refused.

Neither is part of steerbench: they exist so that tests can see where requests went.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from steerbench.sim.offline_data import identify, respond
from tests.helpers import send_json


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class _LocalServer:
    """Start/stop plumbing shared by both servers."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.lock = threading.Lock()
        handler_with_owner = type(handler.__name__, (handler,), {"owner": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler_with_owner)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        send_json(self, status, payload)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")


# ---------------------------------------------------------------- Anthropic Messages API


class MessagesAPIServer(_LocalServer):
    """`POST /v1/messages` answered by `grade(messages)`; records what it was asked.

    `requests` holds (model, benchmark the prompt belongs to, kind of prompt) per request.
    """

    def __init__(self, grade: Callable[[list[dict[str, Any]]], str] | None = None):
        self.key = "sk-ant-test-" + secrets.token_hex(12)
        self.grade = grade or (lambda messages: respond(messages, correct=True))
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.rejected_keys = 0
        super().__init__(_MessagesHandler)


def _anthropic_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages in the {role, content} shape `respond` reads (system first)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend({"role": m.get("role"), "content": m.get("content")} for m in body.get("messages", []))
    return messages


class _MessagesHandler(_JSONHandler):
    owner: MessagesAPIServer

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path.split("?")[0].rstrip("/") != "/v1/messages":
            self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            return
        # the SDK sends the key as x-api-key, or as a bearer token (how Inspect passes it)
        if self.owner.key not in (
            self.headers.get("x-api-key"),
            self.headers.get("Authorization", "").removeprefix("Bearer "),
        ):
            with self.owner.lock:
                self.owner.rejected_keys += 1
            self._send_json(
                401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid API key"}}
            )
            return
        messages = _anthropic_messages(body)
        found = identify(messages)
        text = self.owner.grade(messages)
        with self.owner.lock:
            self.owner.requests.append(
                (str(body.get("model")), found.benchmark if found else None, found.kind if found else None)
            )
        message = {
            "id": "msg_" + secrets.token_hex(8),
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": len(text.split())},
        }
        if body.get("stream"):
            self._stream(message, text)
        else:
            self._send_json(200, message)

    def _stream(self, message: dict[str, Any], text: str) -> None:
        """The same answer as server-sent events (the SDK streams long requests)."""
        start = {**message, "content": [], "stop_reason": None}
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": message["usage"]["output_tokens"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        data = "".join(f"event: {name}\ndata: {json.dumps(payload)}\n\n" for name, payload in events).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# ---------------------------------------------------------------- the trap proxy


class TrapProxy(_LocalServer):
    """An HTTP(S) proxy that lets nothing through: `attempts` lists what was tried."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        super().__init__(_TrapHandler)

    def environment(self) -> dict[str, str]:
        """Proxy variables that send every non-loopback request here."""
        loopback = "127.0.0.1,localhost"
        return {
            "HTTP_PROXY": self.url,
            "HTTPS_PROXY": self.url,
            "http_proxy": self.url,
            "https_proxy": self.url,
            "ALL_PROXY": self.url,
            "all_proxy": self.url,
            "NO_PROXY": loopback,
            "no_proxy": loopback,
        }


class _TrapHandler(_JSONHandler):
    owner: TrapProxy

    def _trap(self) -> None:
        with self.owner.lock:
            self.owner.attempts.append(f"{self.command} {self.path} at {time.strftime('%H:%M:%S')}")
        self._send_json(403, {"error": "network access attempted during an offline test"})
        self.close_connection = True

    do_CONNECT = do_GET = do_POST = do_HEAD = _trap  # noqa: N815
