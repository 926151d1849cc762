"""`/data/<name>`: the FileWriter's files, served straight from the data directory (GET, HEAD, DELETE)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from opendcu.simplon.paths import UnsafePath, resolve_in
from opendcu.base.rest.responses import text_error

router = APIRouter()


def _file(request: Request, name: str) -> Path | Response:
    data_dir: Path = request.app.state.data_dir
    try:
        path = resolve_in(data_dir, name)
    except UnsafePath as exc:
        return text_error(400, str(exc))
    if not path.is_file() or path.name.startswith("."):
        return text_error(404, f"file {name} does not exist")
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
