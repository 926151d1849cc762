"""Bounds on what a client may send: body size (413), JSON nesting depth, integers that fit 64 bits.

The largest legitimate body is a float32 flatfield of the largest detector as a base64 darray (EIGER2 16M:
4150 x 4371 x 4 bytes x 4/3 ≈ 97 MB); `MAX_BODY_BYTES` leaves room above it.
"""

from __future__ import annotations

from typing import Any

MAX_BODY_BYTES = 160 << 20
#: deepest JSON nesting a request may have (SIMPLON values are at most a darray object in a {"value": ...})
MAX_JSON_DEPTH = 32


class BodyTooLarge(Exception):
    """More than MAX_BODY_BYTES were sent (HTTP 413)."""


class BodyLimit:
    """ASGI middleware: answer 413 as soon as a request body exceeds `limit` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                await _answer(send, 400, b"Content-Length is not a number")
                return
            if too_large:
                await _answer(send, 413, self._message(int(declared)))
                return
        received = 0
        answered = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not answered:
                await _answer(send, 413, self._message(received))

    def _message(self, size: int) -> bytes:
        return (
            f"the request body ({size} bytes or more) is larger than the {self.limit} bytes this DCU accepts".encode()
        )


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def json_depth_exceeded(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit` (counted outside strings, before parsing,
    so that a hostile body never reaches the recursive parser)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:  # the usual body (a darray's base64 has no brackets)
        return False
    text = data.decode("utf-8", "replace")
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False
