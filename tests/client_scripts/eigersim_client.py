"""ALBA's eiger-simulator client (`eigersim.client.Eiger`): requests without Content-Type; one JSON report.

python eigersim_client.py HOST PORT
"""

from __future__ import annotations

import json
import sys

from eigersim.client import Eiger


def main(url: str) -> None:
    e = Eiger(url)
    report: dict[str, dict] = {}

    def step(name, call):
        try:
            report[name] = {"ok": True, "result": call()}
        except Exception as exc:
            report[name] = {"ok": False, "error": repr(exc)[:300]}

    step("version", lambda: e.version)
    step("state before", lambda: e.state)
    step("initialize", lambda: e.initialize().status_code)
    step("state", lambda: e.state)

    def set_values():
        e.nimages = 2
        e.count_time = 0.02
        e.frame_time = 0.03
        e.trigger_mode = "ints"
        e.photon_energy = 9000.0
        return [e.nimages, e.count_time, e.frame_time, e.trigger_mode, e.photon_energy, e.wavelength]

    step("set values", set_values)
    step("read only", lambda: [e.description, e.x_pixels_in_detector, e.y_pixels_in_detector, e.sensor_material])
    step("status", lambda: [e.time[:4], e.error, getattr(e, "board_000/th0_temp")])
    step("arm", lambda: e.arm().json())
    step("trigger", lambda: [e.trigger().status_code, e.state])
    step("disarm", lambda: e.disarm().json())
    step("cancel", lambda: e.cancel().status_code)
    step("abort", lambda: e.abort().status_code)
    step("filewriter", lambda: [e.filewriter.mode, e.filewriter.name_pattern, e.filewriter.nimages_per_file])
    step("stream", lambda: [e.stream.mode, e.stream.header_detail, e.stream.state, e.stream.dropped])
    step("monitor", lambda: [e.monitor.buffer_size, e.monitor.state, e.monitor.dropped])
    print(json.dumps(report))


if __name__ == "__main__":
    main(f"http://{sys.argv[1]}:{sys.argv[2]}")
