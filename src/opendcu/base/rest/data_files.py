"""`/data/<name>`: the FileWriter's files, served straight from the data directory (GET, HEAD, DELETE)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from opendcu.base.rest.responses import text_error
from opendcu.simplon.paths import NAME_MAX, UnsafePath, resolve_in

router = APIRouter()


def _file(request: Request, name: str) -> Path | Response:
    data_dir: Path = request.app.state.data_dir
    if "\x00" in name:
        return text_error(400, "a file name cannot contain a NUL character")
    if any(len(part.encode()) > NAME_MAX for part in name.split("/")):
        return text_error(400, f"a file name component is longer than {NAME_MAX} bytes")
    try:
        path = resolve_in(data_dir, name)
        # hidden names (files being written, the sequence state) are not served, as in the files list and WebDAV
        hidden = any(part.startswith(".") for part in path.relative_to(data_dir.resolve()).parts)
        if hidden or not path.is_file():
            return text_error(404, f"file {name} does not exist")
    except UnsafePath as exc:
        return text_error(400, str(exc))
    except (OSError, ValueError) as exc:
        return text_error(400, f"file {name!r:.80} cannot be looked up: {exc}")
    return path


@router.get("/data/{name:path}")
async def get_file(name: str, request: Request) -> Response:
    path = _file(request, name)
    if isinstance(path, Response):
        return path
    return FileResponse(path, media_type="application/octet-stream")


@router.head("/data/{name:path}")
async def head_file(name: str, request: Request) -> Response:
    path = _file(request, name)
    if isinstance(path, Response):
        return Response(status_code=path.status_code)
    return Response(headers={"content-length": str(path.stat().st_size)}, media_type="application/octet-stream")


@router.delete("/data/{name:path}")
async def delete_file(name: str, request: Request) -> Response:
    path = _file(request, name)
    if isinstance(path, Response):
        return path
    path.unlink(missing_ok=True)
    return Response(status_code=204)
