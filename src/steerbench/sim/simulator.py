"""A steered-model simulator: OpenAI-compatible endpoints on 127.0.0.1, one per multiplier.

Each endpoint serves only `GET /v1/models` and `POST /v1/chat/completions` (like the patched
vLLM servers of a real study), checks its own key, and answers through a `responder`.
It is used by `steerbench demo`, `steerbench simulate` and the test suite, which also use
its fault hooks and counters (requests seen, peak in-flight requests).

THIS IS A SIMULATOR: its answers are made up by rules, not by a language model.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """A responder's answer with the finish reason the server reports: "length" is an answer
    that stopped at the token limit (Inspect reads it as stop reason `max_tokens`). Usage counts
    a token per whitespace-separated word, for every answer."""

    text: str
    finish_reason: str = "stop"


# responder(multiplier, messages, request body) -> assistant text (finish reason "stop"), or a Reply
Responder = Callable[[float, list[dict[str, Any]], dict[str, Any]], "str | Reply"]
# fault(endpoint, request number) -> None (answer normally) or one of the FAULTS
Fault = Callable[["SimulatedEndpoint", int], str | None]
# "drop": close the connection before answering; "truncate": send the headers and half the
# body, then close (a server dying mid-response); "401": reject the key, echoing the request's
# Authorization header in the error body (as some proxies do).
FAULTS = ("500", "503", "drop", "truncate", "slow", "401")

SIMULATOR_NOTICE = "SIMULATED steered model (steerbench simulator): answers follow a rule, not a real model"


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


@dataclass
class EndpointStats:
    requests: int = 0
    completions: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    prompts: Counter[str] = field(default_factory=Counter)  # last user message -> times answered
    model_list_requests: int = 0  # GET /v1/models (the preflight), not counted in `requests`
    bodies: list[dict[str, Any]] = field(default_factory=list)


class SimulatedEndpoint:
    def __init__(
        self,
        multiplier: float,
        responder: Responder,
        key: str | None = None,
        model: str = "simulated-steered-model",
        fault: Fault | None = None,
        latency: float = 0.0,
        slow_seconds: float = 5.0,
        keep_bodies: bool = False,
        port: int = 0,
        max_concurrency: int | None = None,
        per_request: bool = False,
    ):
        self.multiplier = multiplier
        # Like steerbench serve --one-server: each request's vllm_xargs.steer_multiplier picks its
        # multiplier (none: unsteered, 0), and `multiplier` is ignored.
        self.per_request = per_request
        self.responder = responder
        self.key = key or "sim-" + secrets.token_hex(12)
        self.model = model
        self.fault = fault
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.keep_bodies = keep_bodies
        # Like a GPU server's batch limit: at most this many requests are served at once and
        # the rest wait their turn (None: no limit). Arrivals still count in peak_in_flight.
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self.stats = EndpointStats()
        self._lock = threading.Lock()
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[Any] = set()  # open client sockets, for stop(abort_connections=True)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def requested_port(self) -> int:
        """The port asked for (0: any free one), or the one it listened on once started."""
        return self._requested_port

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/"

    def start(self) -> SimulatedEndpoint:
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", self._requested_port), handler)
        self._server.daemon_threads = True
        self._requested_port = self.port  # a restart comes back on the same port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self, abort_connections: bool = False) -> None:
        """Stop listening. With abort_connections, also cut every open connection, as a
        server process that dies or restarts does (requests in flight get no answer)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if abort_connections:
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def deployment_line(self, with_model: bool = False) -> dict[str, Any]:
        line: dict[str, Any] = {"multiplier": _label(self.multiplier), "url": self.url, "key": self.key}
        if with_model:
            line["model"] = self.model
        return line

    # -- request handling --------------------------------------------------------

    def multiplier_of(self, body: dict[str, Any]) -> float:
        if not self.per_request:
            return self.multiplier
        return float((body.get("vllm_xargs") or {}).get("steer_multiplier", 0.0))

    def shared_deployment_lines(self, multipliers: list[float]) -> list[dict[str, Any]]:
        """One server for every multiplier: the same URL and key, the multiplier in extra_body."""
        return [
            {
                "multiplier": _label(m),
                "url": self.url,
                "key": self.key,
                "extra_body": {"vllm_xargs": {"steer_multiplier": m}},
            }
            for m in multipliers
        ]

    def _enter(self) -> int:
        with self._lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
            return self.stats.requests

    def _leave(self) -> None:
        with self._lock:
            self.stats.in_flight -= 1

    def _record(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        user = [message_text(m) for m in messages if m.get("role") == "user"]
        with self._lock:
            self.stats.completions += 1
            self.stats.prompts[user[-1] if user else ""] += 1
            if self.keep_bodies:
                self.stats.bodies.append(body)


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connection attempts when a client opens dozens of
    # connections at once, and each dropped SYN costs the client a 1 s retransmit.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up (a timeout, a killed process) is normal here, not worth a traceback
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    """Answer a request with `payload` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _label(value: float) -> str:
    return repr(float(value))


def _make_handler(endpoint: SimulatedEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without NODELAY, Nagle plus the
            # client's delayed ACK stalls every response by ~40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with endpoint._lock:
                endpoint._connections.add(self.connection)

        def finish(self) -> None:
            with endpoint._lock:
                endpoint._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            _send_json(self, status, payload)

        def _send_half(self, payload: dict[str, Any]) -> None:
            """Announce the whole body, send half of it, and hang up."""
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {endpoint.key}":
                return True
            self._send(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
            return False

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, {"error": {"message": "not found"}})
                return
            with endpoint._lock:
                endpoint.stats.model_list_requests += 1
            if not self._authorized():
                return
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": endpoint.model, "object": "model", "owned_by": "steerbench-simulator"}],
                },
            )

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"{self.path} is not served here"}})
                return
            number = endpoint._enter()
            try:
                if not self._authorized():
                    return
                fault = endpoint.fault(endpoint, number) if endpoint.fault else None
                if fault in ("500", "503"):
                    self._send(int(fault), {"error": {"message": "simulated server error"}})
                    return
                if fault == "401":
                    self._send(
                        401,
                        {"error": {"message": f"bad credentials: Authorization: {self.headers.get('Authorization')}"}},
                    )
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "slow":
                    time.sleep(endpoint.slow_seconds)
                body = json.loads(raw or b"{}")
                if body.get("model") != endpoint.model:
                    self._send(404, {"error": {"message": f"model {body.get('model')!r} does not exist"}})
                    return
                messages = body.get("messages", [])
                with endpoint._slots or contextlib.nullcontext():
                    if endpoint.latency:
                        time.sleep(endpoint.latency)
                    text = endpoint.responder(endpoint.multiplier_of(body), messages, body)
                if fault == "truncate":
                    self._send_half(_completion(endpoint.model, text, messages))
                    return
                endpoint._record(body, messages)
                self._send(200, _completion(endpoint.model, text, messages))
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                endpoint._leave()

    return Handler


def _completion(model: str, answer: str | Reply, messages: list[dict[str, Any]]) -> dict[str, Any]:
    text, finish_reason = (answer.text, answer.finish_reason) if isinstance(answer, Reply) else (answer, "stop")
    prompt_tokens = sum(len(message_text(m).split()) for m in messages)
    completion_tokens = len(text.split())
    return {
        "id": "chatcmpl-" + secrets.token_hex(8),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class SimulatedFleet:
    """Several endpoints, one per multiplier; a context manager that stops them all."""

    def __init__(self, multipliers: list[float], responder: Responder, **endpoint_args: Any):
        self.endpoints = [SimulatedEndpoint(m, responder, **endpoint_args) for m in multipliers]

    def __enter__(self) -> SimulatedFleet:
        for endpoint in self.endpoints:
            endpoint.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for endpoint in self.endpoints:
            endpoint.stop()

    def deployment_lines(self, with_model: bool = False) -> list[dict[str, Any]]:
        return [e.deployment_line(with_model) for e in self.endpoints]

    def write_deployments(self, path: Any, with_model: bool = False) -> None:
        with open(path, "w") as f:
            for line in self.deployment_lines(with_model):
                f.write(json.dumps(line) + "\n")

    def by_multiplier(self, value: float) -> SimulatedEndpoint:
        return next(e for e in self.endpoints if e.multiplier == value)
