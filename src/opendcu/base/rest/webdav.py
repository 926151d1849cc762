"""The data directory over WebDAV (WsgiDAV), mounted at `/webdav/`, read-only.

Beamline users mount it in a file manager (davfs2, Finder, Explorer) or copy files with any WebDAV client.
Files being written (hidden `.name.part`) are not shown, like on `/data/`; deleting stays with
`DELETE /data/<name>` and `filewriter/command/clear`.
"""

from __future__ import annotations

from pathlib import Path

from a2wsgi import WSGIMiddleware
from wsgidav.fs_dav_provider import FilesystemProvider, FolderResource
from wsgidav.wsgidav_app import WsgiDAVApp

MOUNT = "/webdav"


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


def create_webdav_app(data_dir: Path) -> WSGIMiddleware:
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
    return WSGIMiddleware(WsgiDAVApp(config))
