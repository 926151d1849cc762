"""A minimal REST client for the terminal commands."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import typer


def parse_value(text: str) -> Any:
    """JSON if it parses (numbers, true/false, lists), otherwise the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def auth_headers() -> dict[str, str]:
    """The DCU's token ($OPENDCU_AUTH_TOKEN, as `dcu serve --auth-token` takes it), if one is set."""
    token = os.environ.get("OPENDCU_AUTH_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def request(url: str, method: str, path: str, body: Any = None) -> Any:
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, timeout=None, headers=auth_headers())
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    if response.status_code >= 400:
        typer.echo(f"error {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.text


def show(result: Any, full: bool = False) -> None:
    """Print an answer as JSON; of a GET object only its value unless `full`."""
    if not full and isinstance(result, dict) and "value" in result and "value_type" in result:
        result = result["value"]
    typer.echo(json.dumps(result))
