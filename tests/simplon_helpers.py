"""Helpers of the SIMPLON tests: one DCU shared by a test module, and small REST shortcuts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import DcuServer, start_dcu

V = "/detector/api/1.8.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[DcuServer]:
    """A DCU (simulated EIGER2 500K) shared by the tests of one module, stopped after them."""
    dcu = start_dcu(tmp_path_factory.mktemp("dcu"))
    try:
        yield dcu
    finally:
        if dcu.process.poll() is None:
            dcu.stop()


@pytest.fixture
def http(server: DcuServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def put(
    http: httpx.Client, path: str, value=None, module: str = "detector", task: str = "config", **kw
) -> httpx.Response:
    url = f"/{module}/api/1.8.0/{task}/{path}"
    return http.put(url, json={"value": value}, **kw) if task == "config" else http.put(url, **kw)


def value(http: httpx.Client, key: str, module: str = "detector", task: str = "config"):
    r = http.get(f"/{module}/api/1.8.0/{task}/{key}")
    assert r.status_code == 200, (key, r.status_code, r.text)
    return r.json()["value"]


def state(http: httpx.Client) -> str:
    return value(http, "state", task="status")


def command(http: httpx.Client, name: str, module: str = "detector", **kw) -> httpx.Response:
    return http.put(f"/{module}/api/1.8.0/command/{name}", **kw)


def wait_state(http: httpx.Client, wanted: str, timeout: float = 30.0) -> str:
    """Poll the detector state until it is `wanted` (returns the last state seen)."""
    deadline = time.monotonic() + timeout
    while (s := state(http)) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return s


def initialized(http: httpx.Client) -> None:
    r = command(http, "initialize")
    assert r.status_code == 200, r.text
