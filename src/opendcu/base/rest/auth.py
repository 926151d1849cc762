"""Optional access control for everything the base system serves (REST, /data, WebDAV, docs).

`dcu serve --auth-token SECRET` (or $OPENDCU_AUTH_TOKEN) makes every request show the secret, either as
`Authorization: Bearer SECRET` (scripts, `dcu` with $OPENDCU_AUTH_TOKEN) or as HTTP basic authentication with
any user name and SECRET as the password (WebDAV clients, browsers). Without a token nothing is checked: the
default binds loopback only, and `dcu serve` warns when it binds beyond loopback without one.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from typing import Any

REALM = b'Basic realm="opendcu", charset="UTF-8"'


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def presented_secret(authorization: bytes) -> bytes | None:
    """The secret of an Authorization header: a bearer token, or the password of basic authentication."""
    scheme, _, credentials = authorization.strip().partition(b" ")
    if scheme.lower() == b"bearer":
        return credentials.strip()
    if scheme.lower() == b"basic":
        try:
            _user, _, password = base64.b64decode(credentials.strip(), validate=True).partition(b":")
        except ValueError:
            return None
        return password
    return None


class TokenAuth:
    """ASGI middleware: 401 (with a basic-auth challenge) unless the request carries the token."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        secret = presented_secret(header)
        if secret is not None and hmac.compare_digest(secret, self.token):
            await self.app(scope, receive, send)
            return
        body = b"authentication required: send the DCU's token (Authorization: Bearer, or as basic-auth password)"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", REALM),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
