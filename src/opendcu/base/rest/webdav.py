"""The data directory over WebDAV (WsgiDAV), mounted at `/webdav/`, read-only.

Beamline users mount it in a file manager (davfs2, Finder, Explorer) or copy files with any WebDAV client.
Files being written (hidden `.name.part`) are not shown, like on `/data/`; deleting stays with
`DELETE /data/<name>` and `filewriter/command/clear`. Read-only in every verb: only GET, HEAD, OPTIONS and
PROPFIND reach WsgiDAV, every other method (PUT, DELETE, MOVE, COPY, MKCOL, PROPPATCH, LOCK, UNLOCK) is answered
405, and a path with `..` or a NUL is answered 400, all with a short text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

from a2wsgi import WSGIMiddleware
from starlette.types import Receive, Scope, Send
from wsgidav.fs_dav_provider import FilesystemProvider, FolderResource
from wsgidav.wsgidav_app import WsgiDAVApp

MOUNT = "/webdav"
READ_METHODS = ("GET", "HEAD", "OPTIONS", "PROPFIND")


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.strip("/").split("/") if part)


class _VisibleFolder(FolderResource):
    def get_member_names(self) -> list[str]:
        return [n for n in super().get_member_names() if not n.startswith(".")]


class DataDirProvider(FilesystemProvider):
    """The data directory without hidden (partial) files."""

    def get_resource_inst(self, path: str, environ: dict):
        if _hidden(path):
            return None
        resource = super().get_resource_inst(path, environ)
        if isinstance(resource, FolderResource):
            return _VisibleFolder(path, environ, resource._file_path)
        return resource


class ReadOnlyGuard:
    """ASGI wrapper: the verbs that read go to WsgiDAV, the others are refused here."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope.get("path", "").encode()
        path = unquote(raw.decode("latin-1"))
        if "\x00" in path or ".." in path.split("/"):
            await _text(send, 400, "a WebDAV path may not contain '..' or NUL")
        elif scope["method"] not in READ_METHODS:
            await _text(
                send,
                405,
                f"the WebDAV share is read-only: {scope['method']} is not allowed",
                [(b"allow", ", ".join(READ_METHODS).encode())],
            )
        else:
            await self.app(scope, receive, send)


async def _text(send: Send, status: int, text: str, headers: list | None = None) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_webdav_app(data_dir: Path) -> ReadOnlyGuard:
    """An ASGI app serving `data_dir` read-only over WebDAV (anonymous, like `/data/`)."""
    config = {
        "provider_mapping": {"/": DataDirProvider(str(data_dir), readonly=True, fs_opts={})},
        "simple_dc": {"user_mapping": {"*": True}},
        "http_authenticator": {"domain_controller": None},
        "dir_browser": {"enable": True},
        "logging": {"enable": False},
        "verbose": 1,
        "mount_path": MOUNT,
    }
    return ReadOnlyGuard(WSGIMiddleware(WsgiDAVApp(config)))
