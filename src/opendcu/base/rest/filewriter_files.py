"""`GET /filewriter/api/<v>/files/`: the FileWriter's files as a bare JSON list (1.6 docs, DEigerClient)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from opendcu.base.rest.responses import json_response, text_error
from opendcu.base.rest.simplon import API_VERSIONS
from opendcu.simplon.paths import list_data_files

router = APIRouter()


@router.get("/filewriter/api/{version}/files")
@router.get("/filewriter/api/{version}/files/")
async def list_files(version: str, request: Request) -> Response:
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported")
    return json_response(list_data_files(request.app.state.data_dir))
