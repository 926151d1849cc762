"""The DAQ's packet accounting over SIMPLON REST (detector status `daq/...`), on a real `dcu serve`."""

from __future__ import annotations

import pytest
from conftest import DcuServer

pytestmark = pytest.mark.integration
V = "/detector/api/1.8.0"


def test_daq_counters_are_detector_status_keys(dcu: DcuServer):
    with dcu.client() as http:
        assert http.put(f"{V}/command/initialize").status_code == 200
        keys = http.get(f"{V}/status/keys").json()
        assert {"daq/efficiency", "daq/packets_lost", "daq/packets_malformed"} <= set(keys)
        for key, value in [("nimages", 3), ("frame_time", 0.02), ("count_time", 0.015)]:  # one sub-frame (< 17.5 ms)
            assert http.put(f"{V}/config/{key}", json={"value": value}).status_code == 200
        series_id = http.put(f"{V}/command/arm").json()["sequence id"]
        assert http.put(f"{V}/command/trigger").status_code == 200

        def status(key):
            return http.get(f"{V}/status/daq/{key}").json()

        efficiency = status("efficiency")
        assert (efficiency["value"], efficiency["value_type"], efficiency["access_mode"]) == (1.0, "float", "r")
        assert status("series_id")["value"] == series_id
        assert status("packets_expected")["value"] == status("packets_received")["value"] == 3 * 128
        assert status("packets_expected")["value_type"] == "uint"
        for key in (
            "packets_lost",
            "packets_late",
            "packets_duplicate",
            "packets_foreign",
            "packets_malformed",
            "packets_overflow",
            "frames_incomplete",
            "frames_lost",
        ):
            assert status(key)["value"] == 0, key
        assert status("frames_complete")["value"] == 3
