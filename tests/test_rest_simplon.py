"""The SIMPLON REST surface of a running DCU: URL grammar, versions, GET shapes, PUT change lists, darray and
TIFF arrays, multi-key PUT, the error table and the headers real clients need (spec/simplon-api.md §1-6)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import tifffile
from simplon_helpers import V, command, http, initialized, put, server, state, value  # noqa: F401

pytestmark = pytest.mark.integration
FASTCS_TYPES = {"float", "int", "bool", "uint", "string", "datetime", "State", "string[]"}


def test_na_until_initialize_then_every_listed_key_has_a_valid_descriptor(http):
    command(http, "abort")
    assert http.put("/system/api/1.8.0/command/restart").status_code == 200  # back to a fresh app-detector
    assert state(http) == "na"
    r = http.get(f"{V}/config/count_time")
    assert r.status_code == 404 and r.text == "Parameter count_time does not exist"
    assert http.get(f"{V}/config/keys").json() == []
    assert http.get(f"{V}/status/keys").json() == ["state"]
    assert command(http, "arm").status_code == 400
    initialized(http)
    assert state(http) == "idle"
    for task in ("config", "status"):
        keys = http.get(f"{V}/{task}/keys").json()
        assert len(keys) > (50 if task == "config" else 8)
        for key in keys + (["wavelength"] if task == "config" else ["error"]):
            r = http.get(f"{V}/{task}/{key}")
            assert r.status_code == 200, (key, r.text)
            assert r.headers["content-type"] == "application/json"
            assert int(r.headers["content-length"]) == len(r.content)
            d = r.json()
            assert d["value_type"] in FASTCS_TYPES, (key, d)
            assert d.get("access_mode", "rw") in ("r", "w", "rw")
            for limit in ("min", "max"):
                assert limit not in d or isinstance(d[limit], (int, float)), (key, d)
            if task == "status":
                assert d["state"] in ("normal", "critical") and "time" in d


def test_versions_and_trailing_slashes(http):
    for path in ("/detector/api/version", "/detector/api/version/", "/filewriter/api/version/", "/system/api/version/"):
        r = http.get(path)
        assert r.status_code == 200 and r.json() == {"value": "1.8.0", "value_type": "string"}, path
    assert http.get("/nosuch/api/version/").status_code == 404
    initialized(http)
    assert value(http, "count_time") == http.get("/detector/api/1.6.0/config/count_time/").json()["value"]
    for bad in ("9.9.9", "1.7.0", "1.5.0"):
        r = http.get(f"/detector/api/{bad}/config/count_time")
        assert r.status_code == 404 and "not supported" in r.text
    full = http.get(f"{V}/config/").json()  # DEigerClient's "full configuration"
    assert full["nimages"]["value"] == 1 and full["trigger_mode"]["allowed_values"] == ["ints", "inte", "exts", "exte"]
    assert http.get(f"{V}/config").json().keys() == full.keys()
    assert "state" in http.get("/detector/api/1.8.0/keys").json()
    assert http.get(f"{V}/command/keys").json()[:6] == ["initialize", "arm", "trigger", "disarm", "cancel", "abort"]


def test_descriptor_shapes_match_real_detectors(http):
    initialized(http)
    ct = http.get(f"{V}/config/count_time").json()
    assert set(ct) == {"value", "value_type", "access_mode", "min", "max", "unit"}
    assert ct["value_type"] == "float" and ct["unit"] == "s" and ct["access_mode"] == "rw" and ct["max"] == 3600
    nimages = http.get(f"{V}/config/nimages").json()
    assert (nimages["value_type"], nimages["min"], nimages["max"]) == ("uint", 1, 2_000_000_000)
    desc = http.get(f"{V}/config/description").json()
    assert desc["access_mode"] == "r" and "EIGER2" in desc["value"]
    st = http.get(f"{V}/status/state").json()
    assert st["critical_values"] == ["na", "error"] and st["allowed_values"][0] == "na"
    assert http.get(f"{V}/status/error").json()["value"] == []
    temp = http.get(f"{V}/status/board_000/th0_temp").json()
    assert temp["critical_limits"] == [15.0, 37.5] and temp["state"] == "normal"
    mask = http.get(f"{V}/config/pixel_mask").json()["value"]
    assert mask["__darray__"] == [1, 0, 0] and mask["type"] == "<u4" and mask["shape"] == [512, 1028]
    assert mask["filters"] == ["base64"]


@pytest.mark.parametrize(
    "key, wanted",
    [
        (
            "count_time",
            [
                "bit_depth_image",
                "bit_depth_readout",
                "count_time",
                "countrate_correction_count_cutoff",
                "frame_count_time",
                "frame_period",
                "frame_time",
                "nframes_sum",
            ],
        ),
        (
            "photon_energy",
            [
                "element",
                "incident_energy",
                "photon_energy",
                "threshold/1/energy",
                "threshold/2/energy",
                "threshold_energy",
                "wavelength",
            ],
        ),
        ("threshold/1/energy", ["threshold/1/energy", "threshold_energy"]),
        ("threshold/difference/mode", ["difference_mode"]),
        ("threshold/1/mode", ["threshold/1/mode", "threshold/difference/mode"]),
        ("beam_center_x", ["beam_center_x"]),
        ("nimages", ["nimages"]),
    ],
)
def test_put_answers_the_change_list(http, key, wanted):
    initialized(http)
    new = {
        "count_time": 0.5,
        "photon_energy": 12000.0,
        "threshold/1/energy": 6000.0,
        "threshold/difference/mode": "disabled",
        "threshold/1/mode": "enabled",
        "beam_center_x": 100.5,
        "nimages": 3,
    }[key]
    r = put(http, key, new)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    changed = r.json()
    # the image-processing keys of issue #4 (flatfield, ...) appear once they exist
    assert set(wanted) <= set(changed), changed
    for k in changed:
        if k != "difference_mode":
            assert http.get(f"{V}/config/{k}").status_code == 200, k  # every listed key can be re-read


def test_dependencies_energy_and_time(http):
    initialized(http)
    put(http, "photon_energy", 12699.70)
    assert value(http, "wavelength") == pytest.approx(0.97628, abs=1e-5)
    assert value(http, "element") == "" and value(http, "incident_energy") == 12699.70
    assert value(http, "threshold_energy") == pytest.approx(6349.85)
    assert value(http, "threshold/2/energy") == pytest.approx(1.4 * 12699.70)
    put(http, "element", "Cu")
    assert value(http, "photon_energy") == 8047.78 and value(http, "wavelength") == pytest.approx(1.5406, abs=1e-4)
    put(http, "wavelength", 1.0)
    assert value(http, "photon_energy") == pytest.approx(12398.42)
    put(http, "frame_time", 0.1)
    assert value(http, "count_time") == pytest.approx(0.1 - 1e-7)
    put(http, "count_time", 0.5)
    assert value(http, "frame_time") == pytest.approx(0.5 + 1e-7)
    put(http, "count_time", 0.2)  # a shorter count time leaves the period alone
    assert value(http, "frame_time") == pytest.approx(0.5 + 1e-7)
    # auto-summation: 0.2 s is 12 sub-frames of at most 17.5 ms (hardware/summation.py)
    assert value(http, "nframes_sum") == 12 and value(http, "frame_count_time") == pytest.approx(0.2 / 12)
    assert value(http, "frame_period") == pytest.approx((0.5 + 1e-7) / 12) and value(http, "bit_depth_image") == 32
    put(http, "beam_center_x", 514.0)
    put(http, "beam_center_y", 256.0)
    put(http, "detector_distance", 0.2)
    t = value(http, "detector_translation")
    assert t == pytest.approx([514 * 75e-6, 256 * 75e-6, 0.2])  # fast = -x, slow = -y
    assert put(http, "detector_translation", [0.0, 0.0, 0.15]).status_code == 200
    assert (value(http, "beam_center_x"), value(http, "beam_center_y")) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert value(http, "detector_distance") == pytest.approx(0.15)
    put(http, "detector_orientation_angle", 90.0)
    assert value(http, "detector_orientation") == pytest.approx([0, 1, 0, -1, 0, 0], abs=1e-12)


@pytest.mark.parametrize(
    "key, bad, code, text",
    [
        ("nimages", "ten", 400, "expected a uint"),
        ("nimages", 0, 400, "below the minimum"),
        ("nimages", 2.5, 400, "expected a uint"),
        ("count_time", "0.1", 400, "expected a float"),
        ("count_time", 1e9, 400, "above the maximum"),
        ("trigger_mode", "sometimes", 400, "not one of"),
        ("element", "Xx", 400, "not one of"),
        ("photon_energy", 100.0, 400, "below the minimum"),
        ("pixel_mask_applied", 1, 400, "expected a bool"),
        ("description", "mine", 400, "read-only"),
        ("detector_orientation", [1, 0, 0, 1, 0, 0], 400, "orthonormal"),
        ("transformation_order", ["omega", "nope"], 400, "axes"),
        ("no_such_key", 1, 404, "does not exist"),
    ],
)
def test_bad_values_get_clear_errors_and_change_nothing(http, key, bad, code, text):
    initialized(http)
    before = http.get(f"{V}/config/").json()
    r = put(http, key, bad)
    assert r.status_code == code and text in r.text, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain")
    assert http.get(f"{V}/config/").json() == {k: v for k, v in before.items()}


def test_bodies_real_clients_send(http):
    initialized(http)
    # eiger-simulator: JSON without Content-Type; DEigerClient: charset suffix
    assert http.put(f"{V}/config/nimages", content=b'{"value": 4}').json() == ["nimages"]
    r = http.put(
        f"{V}/config/nimages", content=b'{"value": 5}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert r.json() == ["nimages"] and value(http, "nimages") == 5
    assert http.put(f"{V}/config/nimages", content=b"{not json").status_code == 400
    assert http.put(f"{V}/config/nimages", json={"val": 3}).status_code == 400
    assert http.put(f"{V}/config/nimages", json=[3]).status_code == 400
    # commands: empty + text/html (DEigerClient), no body (aiohttp), {} and {"value": x} (MaxIV)
    assert command(http, "disarm", content=b"", headers={"content-type": "text/html"}).json() == {"sequence id": 0}
    assert command(http, "disarm").status_code == 200
    assert command(http, "disarm", json={}).status_code == 200
    assert command(http, "disarm", json={"value": "disarm"}).status_code == 200
    assert command(http, "disarm", content=b"[1]").status_code == 400
    assert command(http, "fly").status_code == 404
    assert http.put(f"{V}/status/state", json={"value": "idle"}).status_code == 400


def test_multi_key_put_on_the_task_root_is_all_or_nothing(http):
    initialized(http)
    r = http.put(f"{V}/config", json={"nimages": {"value": 7}, "count_time": {"value": 0.25}})
    assert r.status_code == 200
    assert {"nimages", "count_time", "frame_time"} <= set(r.json())
    assert value(http, "nimages") == 7 and value(http, "count_time") == 0.25
    r = http.put(f"{V}/config/", json={"nimages": {"value": 9}, "trigger_mode": {"value": "bad"}})
    assert r.status_code == 400 and "no key of this request was changed" in r.text
    assert value(http, "nimages") == 7
    fw = http.put(
        "/filewriter/api/1.8.0/config", json={"mode": {"value": "enabled"}, "name_pattern": {"value": "x_$id"}}
    )
    assert fw.status_code == 200 and set(fw.json()) == {"mode", "name_pattern"}
    assert http.put(f"{V}/config", json={"nimages": 3}).status_code == 400


def test_pixel_mask_as_darray_and_tiff_and_delete_restores_it(http):
    initialized(http)
    factory = http.get(f"{V}/config/pixel_mask").json()["value"]
    mask = np.zeros((512, 1028), np.uint32)
    mask[10, 20] = 2  # a dead pixel
    darray = {
        "__darray__": [1, 0, 0],
        "type": "<u4",
        "shape": [512, 1028],
        "filters": ["base64"],
        "data": base64.b64encode(mask.tobytes()).decode(),
    }
    r = put(http, "pixel_mask", darray)
    assert r.status_code == 200 and {"pixel_mask", "threshold/1/pixel_mask", "number_of_excluded_pixels"} <= set(
        r.json()
    )
    assert value(http, "number_of_excluded_pixels") == 1
    for accept in ("image/tiff", "application/tiff"):
        r = http.get(f"{V}/config/threshold/1/pixel_mask", headers={"accept": accept})
        assert r.status_code == 200 and r.headers["content-type"] == accept
        np.testing.assert_array_equal(tifffile.imread(io.BytesIO(r.content)), mask)
    upload = io.BytesIO()
    tifffile.imwrite(upload, (mask * 4).astype(np.uint16))
    r = http.put(f"{V}/config/pixel_mask", content=upload.getvalue(), headers={"content-type": "application/tiff"})
    assert r.status_code == 200
    got = http.get(f"{V}/config/pixel_mask").json()["value"]
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(got["data"]), "<u4").reshape(512, 1028), mask * 4)
    # wrong shape, broken TIFF, bad darray: 400
    small = io.BytesIO()
    tifffile.imwrite(small, np.zeros((4, 4), np.uint32))
    assert (
        http.put(f"{V}/config/pixel_mask", content=small.getvalue(), headers={"content-type": "image/tiff"}).status_code
        == 400
    )
    assert http.put(f"{V}/config/pixel_mask", content=b"II*\x00garbage").status_code == 400
    assert put(http, "pixel_mask", {**darray, "data": "!!"}).status_code == 400
    assert put(http, "pixel_mask", {**darray, "shape": [2, 2]}).status_code == 400
    assert put(http, "pixel_mask", {**darray, "type": "<f4"}).status_code == 400
    r = http.delete(f"{V}/config/pixel_mask")
    assert r.status_code == 200 and "pixel_mask" in r.json()
    assert http.get(f"{V}/config/pixel_mask").json()["value"] == factory
    assert http.delete(f"{V}/config/nimages").status_code == 400


def test_unknown_resources_and_methods_are_text_errors(http):
    for method, path, code in [
        ("GET", "/detector/api/1.8.0/bogus/x", 404),
        ("GET", "/nosuch/api/1.8.0/config/x", 404),
        ("GET", "/nosuch", 404),  # `/` itself redirects to the Web-UI (tests/test_webui.py)
        ("PATCH", f"{V}/config/nimages", 405),
        ("GET", f"{V}/command/arm", 404),
        ("GET", "/system/api/1.8.0/config/x", 404),
    ]:
        r = http.request(method, path)
        assert r.status_code == code, (method, path, r.status_code)
        assert r.headers["content-type"].startswith("text/plain") and r.text


def test_system_module_and_docs(http):
    assert "datetime/date" in http.get("/system/api/1.8.0/config/keys").json()
    assert http.get("/system/api/1.8.0/command/keys").json() == ["restart"]
    assert http.get("/system/api/1.8.0/config/system_info/service_tag").json()["value"].startswith("opendcu")
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and http.get("/docs/").status_code == 200
    assert http.get("/docs/static/swagger-ui-bundle.js").status_code == 200
    spec = http.get("/openapi.json").json()
    assert "/{module}/api/{version}/config/{key}" in spec["paths"]
    assert http.get("/simulator/api/1.8.0/command/keys").json() == ["external_trigger"]


def test_1_6_answers(http):
    initialized(http)
    r = http.put("/detector/api/1.6.0/command/initialize")
    assert r.status_code == 200 and r.content == b""
    assert "status_update" in http.get("/detector/api/1.6.0/command/keys").json()
    assert http.put("/detector/api/1.6.0/command/status_update").status_code == 200
    assert http.put(f"{V}/command/status_update").status_code == 404
    put(http, "frame_time", 0.01)
    assert http.put("/detector/api/1.6.0/command/arm").json() == {"sequence id": 1}
    assert http.put("/detector/api/1.6.0/command/trigger").json() == {"sequence id": -1}  # EIGER R answer (§16)
    assert state(http) == "idle"
