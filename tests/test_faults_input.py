"""Hostile and absurd client input on a real `dcu serve` (issue #16): every refusal is a 4xx with a text, never
a 5xx; bodies, JSON depth, strings, integers and TIFF dimensions are bounded; WebDAV is read-only in every verb;
and schemathesis, fuzzing the served OpenAPI, finds no server error and no undocumented status code.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from conftest import DcuServer, start_dcu
from simplon_helpers import V, command, put, value

pytestmark = pytest.mark.integration

#: examples per API operation for schemathesis (every key is an operation: about 400)
FUZZ_EXAMPLES = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    dcu = start_dcu(tmp_path_factory.mktemp("dcu"))
    try:
        yield dcu
    finally:
        if dcu.process.poll() is None:
            dcu.stop()


def raw_request(server: DcuServer, request: bytes) -> bytes:
    """Send bytes exactly as given (no client-side URL normalisation); the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_bad_input_is_refused_with_4xx(server: DcuServer):
    with server.client() as http:
        assert command(http, "initialize").status_code == 200
        # integers beyond 64 bits, on int, uint and float keys and in a multi-key PUT
        for key in ("nimages", "ntrigger", "count_time"):
            r = put(http, key, 2**70)
            assert r.status_code == 400, (key, r.status_code, r.text)
        r = http.put(f"{V}/config", json={"nimages": {"value": -(2**80)}})
        assert r.status_code == 400, r.text
        assert value(http, "nimages") == 1
        # JSON nested 5000 deep, and a little deeper than allowed
        deep = b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        r = http.put(f"{V}/config/nimages", content=deep)
        assert r.status_code == 400 and "deeper than 32" in r.text, r.text
        r = http.put(f"{V}/command/arm", content=b"[" * 5000)
        assert r.status_code == 400, r.text
        # strings: a 5000-character value, a 200 MB body (413 before it is read)
        r = put(http, "name_pattern", "a" * 5000, module="filewriter")
        assert r.status_code == 400 and "at most 4096" in r.text, r.text
        answer = raw_request(
            server,
            b"PUT /filewriter/api/1.8.0/config/name_pattern HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{",
        )
        assert status_of(answer) == 413 and b"larger than" in answer
        # stream appendices take any JSON value (they answered 500 on every value before), bounded in size
        for key in ("header_appendix", "image_appendix"):
            assert put(http, key, {"run": 7, "tags": ["a"]}, module="stream").status_code == 200
            assert value(http, key, module="stream") == {"run": 7, "tags": ["a"]}
            assert put(http, key, "plain text", module="stream").status_code == 200
            r = put(http, key, "x" * 70000, module="stream")
            assert r.status_code == 400 and "at most 65536" in r.text, r.text
        # name_pattern: a trailing newline, through a symlink (refused at arm, 400)
        assert put(http, "name_pattern", "x\n", module="filewriter").status_code == 400
        (server.data_dir / "out").symlink_to("/tmp")
        assert put(http, "name_pattern", "out/s_$id", module="filewriter").status_code == 200
        assert put(http, "mode", "enabled", module="filewriter").status_code == 200
        r = command(http, "arm")
        assert r.status_code == 400 and "symbolic link" in r.text, r.text
        assert put(http, "name_pattern", "series_$id", module="filewriter").status_code == 200
        assert put(http, "mode", "disabled", module="filewriter").status_code == 200
        # absurd sizes: arm names the numbers
        assert put(http, "nimages", 2_000_000_000).status_code == 200
        assert put(http, "ntrigger", 2_000_000_000).status_code == 200
        r = command(http, "arm")
        assert r.status_code == 400 and "4000000000000000000 images" in r.text, r.text
        assert value(http, "state", task="status") == "idle"

        # a 546 KiB deflate TIFF that declares 12000 x 12000: refused from its header, before decoding
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.zeros((12000, 12000), np.uint32), compression="zlib")
        big = buffer.getvalue()
        assert len(big) < 2 << 20
        r = http.put(f"{V}/config/pixel_mask", content=big, headers={"Content-Type": "image/tiff"})
        assert r.status_code == 400 and "12000 x 12000" in r.text and "512 x 1028" in r.text, r.text
        # a TIFF of the detector's shape still works
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.zeros((512, 1028), np.uint32))
        r = http.put(f"{V}/config/pixel_mask", content=buffer.getvalue(), headers={"Content-Type": "image/tiff"})
        assert r.status_code == 200, r.text

        # /data: NUL, 300-character names, hidden names and ../
        (server.data_dir / ".hd").mkdir()
        (server.data_dir / ".hd" / "inner.txt").write_text("hidden")
        for path in ("/data/%00", "/data/" + "a" * 300, "/data/x/" + "b" * 300 + ".h5"):
            r = http.get(path)
            assert r.status_code == 400, (path, r.status_code, r.text)
        assert http.get("/data/.hd/inner.txt").status_code == 404
        assert status_of(raw_request(server, b"GET /data/../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")) in (400, 404)

        # WebDAV: read-only in every verb, ../ refused with a body
        (server.data_dir / "visible.txt").write_text("v")
        assert http.get("/webdav/visible.txt").text == "v"
        assert http.request("PROPFIND", "/webdav/", headers={"Depth": "1"}).status_code == 207
        lock = (
            b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            b"<D:locktype><D:write/></D:locktype></D:lockinfo>"
        )
        for method, body in [
            ("LOCK", lock),
            ("UNLOCK", b""),
            ("PUT", b"x"),
            ("DELETE", b""),
            ("MKCOL", b""),
            ("PROPPATCH", b""),
            ("MOVE", b""),
            ("COPY", b""),
        ]:
            r = http.request(method, "/webdav/visible.txt", content=body)
            assert r.status_code == 405 and "read-only" in r.text, (method, r.status_code)
        assert (server.data_dir / "visible.txt").read_text() == "v"
        answer = raw_request(server, b"GET /webdav/../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(answer) == 400 and answer.endswith(b"may not contain '..' or NUL")
        assert http.get("/webdav/.hd/inner.txt").status_code == 404


#: commands left out of the fuzzing: they block for as long as a fuzzed count_time says (trigger, wait) or
#: restart app-detector (their refusals are tested elsewhere)
SLOW_COMMANDS = {("detector", "trigger"), ("detector", "wait"), ("system", "restart")}
#: keys served but not listed in `keys` (fastcs-eiger rejects unknown value types on listed keys)
UNLISTED = {
    ("detector", "status"): ["series", "error"],
    ("detector", "config"): ["pixel_mask", "flatfield"],
    ("stream", "status"): ["error"],
}


def value_schema_of(http: httpx.Client, module: str, key: str) -> dict:
    """A JSON schema of the key's values from its GET object (type, range, allowed values), so that the fuzzer
    also sends values the DCU accepts."""
    d = http.get(f"/{module}/api/1.8.0/config/{key}").json()
    kind = {
        "bool": "boolean",
        "uint": "integer",
        "int": "integer",
        "float": "number",
        "string": "string",
        "string[]": "array",
    }.get(d["value_type"])
    if kind is None:
        return {}
    out: dict = {"type": kind}
    if kind == "array":
        out["items"] = {"type": "string"}
    if d.get("allowed_values"):
        out["enum"] = d["allowed_values"]
    for limit, name in (("min", "minimum"), ("max", "maximum")):
        if isinstance(d.get(limit), (int, float)) and kind in ("integer", "number"):
            out[name] = d[limit]
    if d["value_type"] == "uint":
        out.setdefault("minimum", 0)
    if out.get("minimum", float("-inf")) > out.get("maximum", float("inf")):  # an empty range in this state
        out.pop("minimum"), out.pop("maximum")
    return out


def every_key_schema(http: httpx.Client) -> dict:
    """The served OpenAPI with each SIMPLON route template expanded into one path per real module, task and key
    (version 1.8.0), so that the fuzzer reaches every key instead of guessing names."""
    schema = http.get("/openapi.json").json()
    templates = {
        task: schema["paths"].pop(f"/{{module}}/api/{{version}}/{task}/{{key}}")
        for task in ("config", "status", "command")
    }
    for module in ("detector", "stream", "filewriter", "monitor", "system", "simulator", "analysis"):
        for task, operations in templates.items():
            r = http.get(f"/{module}/api/1.8.0/{task}/keys")
            keys = (r.json() if r.status_code == 200 else []) + UNLISTED.get((module, task), [])
            for key in keys:
                if (module, key) in SLOW_COMMANDS:
                    continue
                concrete = {}
                value_schema = value_schema_of(http, module, key) if task == "config" else {}
                for method, operation in operations.items():
                    operation = json.loads(json.dumps(operation))
                    if method == "put" and task == "config":
                        body = operation["requestBody"]["content"]["application/json"]["schema"]
                        body["properties"]["value"] = value_schema
                    operation["parameters"] = [
                        p for p in operation.get("parameters", []) if p["name"] not in ("module", "version", "key")
                    ]
                    operation["operationId"] = f"{method}_{module}_{task}_{key}".replace("/", "_")
                    concrete[method] = operation
                schema["paths"][f"/{module}/api/1.8.0/{task}/{key}"] = concrete
    schema["paths"] = {path: ops for path, ops in schema["paths"].items() if not path.endswith("/events")}
    return schema


def test_schemathesis_finds_no_server_error(server: DcuServer, tmp_path: Path):
    """Fuzz every operation of the served OpenAPI, every key of every module included (positive and negative
    data): no 5xx, no status code the OpenAPI does not describe."""
    schema = httpx.get(f"{server.url}/openapi.json").json()
    put_config = schema["paths"]["/{module}/api/{version}/config/{key}"]["put"]
    assert put_config["requestBody"]["content"]["application/json"]["schema"]["required"] == ["value"]
    assert {"400", "404", "405", "408", "413"} <= set(put_config["responses"]) and "422" not in put_config["responses"]
    with server.client() as http:
        assert command(http, "initialize").status_code == 200  # before it the detector has only status/state
        expanded = every_key_schema(http)
    assert "/detector/api/1.8.0/config/count_time" in expanded["paths"]
    assert "/detector/api/1.8.0/status/series" in expanded["paths"]
    n_operations = sum(len(ops) for ops in expanded["paths"].values())
    assert n_operations > 300, n_operations
    (tmp_path / "openapi.json").write_text(json.dumps(expanded))
    st = Path(sys.executable).with_name("st")
    assert st.exists(), "schemathesis is a test dependency (pyproject [test])"
    result = subprocess.run(
        [
            str(st),
            "run",
            str(tmp_path / "openapi.json"),
            "--url",
            server.url,
            "--checks",
            "not_a_server_error,status_code_conformance",
            "--max-examples",
            str(FUZZ_EXAMPLES),
            "--phases",
            "coverage,fuzzing",
            "--seed",
            "16",
            # one worker: Hypothesis is not thread-safe, and with two worker threads the same seed once gave an
            # internal "Inconsistent results" (FlakyFailure) while generating a body, with no server error
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--generation-database",
            "none",
            "--no-color",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    # the errors section comes before the long warnings: show both ends of the report
    tail = result.stdout if len(result.stdout) < 12000 else result.stdout[:6000] + "\n[...]\n" + result.stdout[-5000:]
    print(tail)
    assert result.returncode == 0, tail
    tested = re.search(r"Tested: (\d+)", tail)
    assert tested is not None and int(tested.group(1)) == n_operations, tail
    assert re.search(r"(\d+) generated, \1 passed", tail), tail
    with server.client() as http:
        assert http.get(f"{V}/status/state").status_code == 200
