"""Putting a layer between an Inspect OpenAI-compatible model and its HTTP transport.

Two layers use this: masking keys in response bodies (redaction.py) and the replay journal
(replay.py). httpx keeps no public way to wrap a built client's transports, and Inspect
rebuilds its client after an authentication failure, so both the client it holds and the
ones it builds later are wrapped.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable


def install_transport_layer(api: Any, layer: type, *args: Any) -> bool:
    """Wrap the API's transports in `layer(inner, *args)`; False when the API has no httpx
    client (other providers). Installing the same layer class twice is a no-op."""
    client = getattr(api, "http_client", None)
    build = getattr(api, "_create_http_client", None)
    if client is None or build is None or not hasattr(client, "_transport"):
        return False
    _wrap_client(client, layer, args)
    marker = f"_steerbench_{layer.__name__}"
    if not getattr(build, marker, False):

        def build_wrapped() -> Any:
            built = build()
            _wrap_client(built, layer, args)
            return built

        setattr(build_wrapped, marker, True)
        # the layers installed before this one stay inside it
        for name in dir(build):
            if name.startswith("_steerbench_"):
                setattr(build_wrapped, name, True)
        api._create_http_client = build_wrapped
    return True


def _wrap_client(client: Any, layer: type, args: tuple[Any, ...]) -> None:
    if not _has_layer(client._transport, layer):
        client._transport = layer(client._transport, *args)
    client._mounts = {
        pattern: (None if t is None or _has_layer(t, layer) else layer(t, *args))
        for pattern, t in client._mounts.items()
    }


def _has_layer(transport: Any, layer: type) -> bool:
    while transport is not None:
        if isinstance(transport, layer):
            return True
        transport = getattr(transport, "_steerbench_inner", None)
    return False


def transport_base() -> tuple[type, type]:
    """(AsyncBaseTransport, Response) of the OpenAI SDK's httpx flavour, else plain httpx.
    Imported on first use, so that importing a layer's module imports no HTTP library."""
    try:
        from httpx2 import AsyncBaseTransport, Response
    except ImportError:  # pragma: no cover
        from httpx import AsyncBaseTransport, Response  # type: ignore[assignment]
    return AsyncBaseTransport, Response


def layer_class(name: str, handle: Callable[[Any, Any], Any]) -> type:
    """A transport class `name(inner, state)` whose requests go to `await handle(self, request)`;
    `self._steerbench_inner` is the wrapped transport, `self.state` what it was given."""
    base, _ = transport_base()

    async def handle_async_request(self: Any, request: Any) -> Any:
        return await handle(self, request)

    async def aclose(self: Any) -> None:
        await self._steerbench_inner.aclose()

    def __init__(self: Any, inner: Any, state: Any) -> None:
        self._steerbench_inner, self.state = inner, state

    def __getattr__(self: Any, attr: str) -> Any:
        if attr == "_steerbench_inner":  # not yet set: no recursion
            raise AttributeError(attr)
        return getattr(self._steerbench_inner, attr)

    return type(
        name,
        (base,),
        {
            "__init__": __init__,
            "handle_async_request": handle_async_request,
            "aclose": aclose,
            "__getattr__": __getattr__,
        },
    )
