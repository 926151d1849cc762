"""Schema-driven fuzz of the REST API with hypothesis: requests built from the served OpenAPI document, with
real and random modules, versions, keys, bodies and content types. No answer may be a 5xx, every answer
comes within the timeout, and the DCU keeps serving."""

from __future__ import annotations

import json
import re
from collections import Counter
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simplon_helpers import V, initialized, server, wait_state  # noqa: F401

pytestmark = pytest.mark.integration
TIMEOUT = 10.0
#: commands left out: they start acquisitions whose length the fuzzed config decides, or restart the app
LONG_COMMANDS = {"arm", "trigger", "external_trigger", "restart", "check_connections"}
EXPECTED_CODES = {200, 204, 400, 404, 405, 408}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
darrays = st.fixed_dictionaries(
    {
        "__darray__": st.just([1, 0, 0]),
        "type": st.sampled_from(["<u4", "<f4", "<u2", "|u1", "<f8", ">u4", "O", "<U4", "x"]),
        "shape": st.lists(st.integers(-2, 1100), max_size=3),
        "filters": st.sampled_from([["base64"], [], ["lz4"], "base64"]),
        "data": st.sampled_from(["", "AAAA", "!!", "AAAAAAAAAAA="]),
    }
)
bodies = st.one_of(
    st.none(),
    json_values.map(lambda v: json.dumps({"value": v}).encode()),
    darrays.map(lambda d: json.dumps({"value": d}).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda b: b"II*\x00" + b),
    st.just(b"{}"),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/html",
        "application/tiff",
        "image/tiff",
        "application/hdf5",
        "text/plain",
    ]
)
accepts = st.sampled_from([None, "application/json", "image/tiff", "application/tiff", "*/*"])
odd_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="?#%"), min_size=1, max_size=12
).map(lambda t: quote(t.lstrip("/") or "x", safe="/:@"))


MODULES = ["detector", "filewriter", "stream", "monitor", "system", "simulator"]


def known_names(http: httpx.Client) -> dict[tuple[str, str], list[str]]:
    """(module, task) -> the keys or commands the DCU lists, plus the unlisted ones clients read."""
    names: dict[tuple[str, str], list[str]] = {}
    for module in MODULES:
        for task in ("config", "status", "command"):
            r = http.get(f"/{module}/api/1.8.0/{task}/keys")
            keys = set(r.json()) if r.status_code == 200 else set()
            if task == "command":
                keys -= LONG_COMMANDS
            else:
                keys |= {"keys", ""}
            names[module, task] = sorted(keys) or ["keys"]
    names["detector", "config"] += ["wavelength", "pixel_mask", "threshold/1/pixel_mask", "detector_translation"]
    names["detector", "status"] += ["error"]
    return names


def mostly(valid: list[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid name 9 times in 10, otherwise an odd one."""
    return st.integers(0, 9).flatmap(lambda i: odd if i == 0 else st.sampled_from(valid))


def test_fuzz_the_rest_api(server):
    with server.client(timeout=TIMEOUT) as http:
        initialized(http)
        names = known_names(http)
        schema = http.get("/openapi.json").json()
    operations = [(path, method.upper()) for path, item in schema["paths"].items() for method in item]
    assert len(operations) >= 12

    @st.composite
    def requests(draw):
        path, method = draw(st.sampled_from(operations))
        module = draw(mostly(MODULES, odd_text))
        task = next((t for t in ("config", "status", "command") if f"/{t}" in path), "config")
        valid_keys = names.get((module, task), ["keys"])
        if task == "command":
            key_strategy = mostly(valid_keys, odd_text.filter(lambda k: k not in LONG_COMMANDS))
        else:
            key_strategy = mostly(valid_keys, odd_text | st.sampled_from(valid_keys).map(lambda k: k + "/"))
        fill = {
            "module": module,
            "version": draw(mostly(["1.8.0", "1.6.0"], st.sampled_from(["1.7.0", "version"]) | odd_text)),
            "key": draw(key_strategy),
            "name": draw(odd_text),
        }
        url = path
        for name in re.findall(r"{(\w+)(?::path)?}", path):
            url = url.replace("{" + name + "}", fill.get(name, "x"), 1)
        headers = {}
        if (ct := draw(content_types)) is not None:
            headers["content-type"] = ct
        if (accept := draw(accepts)) is not None:
            headers["accept"] = accept
        body = draw(bodies) if method in ("PUT", "POST") else None
        return method, url, headers, body

    client = server.client(timeout=TIMEOUT)
    seen: Counter = Counter()

    @settings(
        max_examples=800,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests())
    def one_request(req):
        method, url, headers, body = req
        if re.search(r"/command/(" + "|".join(LONG_COMMANDS) + r")/?$", url):
            return
        r = client.request(method, url, headers=headers, content=body)  # a hang raises httpx.ReadTimeout
        seen[r.status_code] += 1
        assert r.status_code < 500, (method, url, headers, body, r.status_code, r.text)
        assert r.status_code in EXPECTED_CODES, (method, url, r.status_code, r.text)
        if r.status_code >= 400 and method != "HEAD":
            assert r.text and r.headers["content-type"].startswith("text/plain")
        elif r.headers.get("content-type") == "application/json":
            assert int(r.headers["content-length"]) == len(r.content)
            json.loads(r.content)

    try:
        one_request()
        print("answers by status:", dict(seen))
        assert sum(seen.values()) >= 300 and seen[200] >= 30 and seen[400] >= 30 and seen[404] >= 30
        # the DCU still works: a normal series after the fuzz
        assert client.put(f"{V}/command/initialize").status_code == 200
        for key, v in [("nimages", 2), ("frame_time", 0.02), ("trigger_mode", "ints"), ("ntrigger", 1)]:
            assert client.put(f"{V}/config/{key}", json={"value": v}).status_code == 200
        assert client.put(f"{V}/command/arm").status_code == 200
        assert client.put(f"{V}/command/trigger").status_code == 200
        assert client.get(f"{V}/status/state").json()["value"] == "idle"
    finally:
        client.close()


class DetectorModelMachine:
    """A reference model of the SIMPLON state machine (spec §8-9) that random command sequences are checked
    against: state, sequence ids and which commands are refused. Sequence ids go on across initialize (never
    reset, #16): the model learns the first one the server gives and counts on from it."""

    def __init__(self) -> None:
        self.state, self.mode, self.ntrigger, self.done = "idle", "ints", 1, 0
        self.sequence_id: int | None = None

    def expect(self, command: str) -> tuple[int, str]:
        """(HTTP code, state afterwards) the real detector must give for `command` in the current model state."""
        if command == "initialize":
            self.state, self.mode, self.ntrigger = "idle", "ints", 1
            return 200, "idle"
        if command == "arm":
            if self.state != "idle":
                return 400, self.state
            self.state, self.done = "ready", 0
            self.sequence_id = None if self.sequence_id is None else self.sequence_id + 1
            return 200, "ready"
        if command in ("trigger", "external_trigger"):
            software = self.mode in ("ints", "inte")
            if self.state != "ready" or software != (command == "trigger"):
                return 400, self.state
            self.done += 1
            self.state = "idle" if self.done == self.ntrigger else "ready"
            return 200, self.state
        self.state = "idle"  # disarm, abort, cancel: harmless when idle
        return 200, "idle"


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ints", "inte", "exts", "exte"]),
            st.integers(1, 3),
            st.lists(
                st.sampled_from(["arm", "trigger", "external_trigger", "disarm", "abort", "cancel", "initialize"]),
                min_size=1,
                max_size=8,
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_random_command_sequences_follow_the_state_machine(server, scenario):
    model = DetectorModelMachine()
    with server.client(timeout=60) as http:
        assert http.put(f"{V}/command/initialize").status_code == 200
        for mode, ntrigger, commands in scenario:
            for key, v in [("trigger_mode", mode), ("ntrigger", ntrigger), ("nimages", 2), ("frame_time", 0.005)]:
                http.put(f"{V}/config/{key}", json={"value": v})
            if model.state == "idle":
                model.mode, model.ntrigger = mode, ntrigger
            for name in commands:
                module = "simulator" if name == "external_trigger" else "detector"
                r = http.put(f"/{module}/api/1.8.0/command/{name}")
                code, wanted = model.expect(name)
                assert r.status_code == code, (mode, name, r.status_code, r.text)
                if name == "arm" and code == 200:
                    if model.sequence_id is None:
                        model.sequence_id = r.json()["sequence id"]
                        assert model.sequence_id >= 1
                    assert r.json() == {"sequence id": model.sequence_id}
                if name == "external_trigger" and code == 200:  # returns at once, like a hardware edge
                    assert wait_state(http, wanted) == wanted, (mode, name)
                assert http.get(f"{V}/status/state").json()["value"] == wanted, (mode, name)
