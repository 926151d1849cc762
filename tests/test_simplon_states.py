"""The detector state machine and the trigger modes on a running DCU (spec/simplon-api.md §8-9): every series
is checked by the number of images that reached the FileWriter."""

from __future__ import annotations

import subprocess
import sys
import threading

import h5py
import hdf5plugin  # noqa: F401
import pytest
from simplon_helpers import V, command, http, initialized, put, server, state, wait_state  # noqa: F401

pytestmark = pytest.mark.integration


def configure(http, **config) -> None:
    initialized(http)
    assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
    config = {"frame_time": 0.02, "count_time": 0.015, **config}
    for key, v in config.items():
        r = put(http, key, v)
        assert r.status_code == 200, (key, r.text)


def images_written(server, series_id: int) -> int:
    with h5py.File(server.data_dir / f"series_{series_id}_master.h5") as f:
        return sum(f["entry/data"][name].shape[0] for name in f["entry/data"] if name in f["entry/data"])


def arm(http) -> int:
    r = command(http, "arm")
    assert r.status_code == 200, r.text
    assert state(http) == "ready"
    return r.json()["sequence id"]


def test_ints_trigger_blocks_until_its_images_then_auto_disarm(http, server):
    configure(http, trigger_mode="ints", nimages=3, ntrigger=2)
    series = arm(http)
    assert series == 1  # initialize resets the series counter
    assert command(http, "trigger").json() == {}
    assert state(http) == "ready"  # the first trigger's 3 images are done, one trigger remains
    assert command(http, "trigger").status_code == 200
    assert state(http) == "idle"  # auto-disarm after the last trigger
    assert images_written(server, series) == 6
    assert command(http, "disarm").json() == {"sequence id": series}  # DectrisTools still disarms: harmless
    assert command(http, "trigger").status_code == 400  # not armed


def test_inte_takes_one_image_per_trigger_with_its_count_time(http, server):
    configure(http, trigger_mode="inte", nimages=5, ntrigger=3)
    series = arm(http)
    for t in (0.01, 0.005, None):
        r = command(http, "trigger", json={"value": t} if t else None)
        assert r.status_code == 200, r.text
    assert state(http) == "idle"
    assert images_written(server, series) == 3  # nimages is implied 1 in inte
    configure(http, trigger_mode="inte", ntrigger=1)
    arm(http)
    r = command(http, "trigger", json={"value": -1})
    assert r.status_code == 400 and "count time" in r.text and state(http) == "ready"
    command(http, "disarm")


@pytest.mark.parametrize("mode, nimages, gate, expected", [("exts", 2, None, 4), ("exte", 7, 0.01, 2)])
def test_external_trigger_modes(http, server, mode, nimages, gate, expected):
    configure(http, trigger_mode=mode, nimages=nimages, ntrigger=2)
    series = arm(http)
    r = command(http, "trigger")
    assert r.status_code == 400 and "no software trigger" in r.text
    assert state(http) == "ready"  # a software trigger in exts/exte changes nothing (RN 2020.2.6)
    body = {"json": {"value": gate}} if gate else {}
    assert command(http, "external_trigger", module="simulator", **body).status_code == 200
    assert wait_state(http, "ready") == "ready"
    cli = [sys.executable, "-m", "opendcu", "external-trigger", *([str(gate)] if gate else []), "--url", server.url]
    assert subprocess.run(cli, capture_output=True, text=True, timeout=60).stdout.strip() == "{}"  # the dcu CLI
    assert command(http, "wait").json() == {"sequence id": -1}  # blocks until the series has ended
    assert state(http) == "idle"
    assert images_written(server, series) == expected
    assert command(http, "external_trigger", module="simulator").status_code == 400  # not armed


def test_external_trigger_is_refused_in_software_modes(http):
    configure(http, trigger_mode="ints", nimages=1)
    arm(http)
    r = command(http, "external_trigger", module="simulator")
    assert r.status_code == 400 and "trigger mode is ints" in r.text and state(http) == "ready"
    command(http, "disarm")


@pytest.mark.parametrize("stop", ["disarm", "abort", "cancel"])
def test_stopping_a_running_series(http, server, stop):
    configure(http, trigger_mode="ints", nimages=500, frame_time=0.01, count_time=0.009)
    series = arm(http)
    answer: dict = {}
    trigger = threading.Thread(target=lambda: answer.setdefault("r", server.client().put(f"{V}/command/trigger")))
    trigger.start()
    assert wait_state(http, "acquire") == "acquire"
    r = command(http, stop)
    assert r.status_code == 200 and r.json() == {"sequence id": series}
    trigger.join(timeout=30)
    assert not trigger.is_alive() and answer["r"].status_code == 200  # the blocked trigger returns
    assert state(http) == "idle"
    n = images_written(server, series)
    assert n < 500
    assert command(http, "arm").status_code == 200  # a new series can start
    command(http, "disarm")


def test_state_refusals(http):
    configure(http, trigger_mode="ints", nimages=1, trigger_start_delay=0.05)
    assert command(http, "trigger").status_code == 400
    series = arm(http)
    r = command(http, "arm")
    assert r.status_code == 400 and "state ready" in r.text
    assert command(http, "trigger").status_code == 200  # after the start delay
    assert state(http) == "idle"
    assert command(http, "arm").json() == {"sequence id": series + 1}
    initialized(http)  # initialize ends the series; sequence ids go on (files are never overwritten, #16)
    assert state(http) == "idle"
    assert command(http, "arm").json() == {"sequence id": series + 2}
    assert command(http, "abort").json() == {"sequence id": series + 2}
    r = command(http, "check_connections")
    assert r.status_code == 200 and r.json() == ["module 0: up"]
    assert state(http) == "na"  # a connection check needs a new initialize
    initialized(http)
