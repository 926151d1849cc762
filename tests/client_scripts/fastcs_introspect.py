"""Run fastcs-eiger (Diamond's EPICS IOC core) against a DCU without EPICS; print one JSON report.

    python fastcs_introspect.py HOST PORT SUBSYSTEM...   (detector, stream, monitor, or "controller")

For each subsystem: introspect it exactly as the IOC does (keys + every key, pydantic-validated), then read
every attribute through fastcs' own IO (values must fit the attribute's datatype), then write a few
attributes: the PUT change lists drive fastcs' re-reads, and every listed key must have an updater.
"controller" runs the whole EigerController.initialise() (all three subsystems, initialize if na).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import traceback

from fastcs.attributes import AttrR, AttrRW
from fastcs.connections import IPConnectionSettings
from fastcs_eiger.controllers.eiger_controller import EigerController
from fastcs_eiger.controllers.eiger_detector_controller import EigerDetectorController
from fastcs_eiger.controllers.eiger_monitor_controller import EigerMonitorController
from fastcs_eiger.controllers.eiger_stream_controller import EigerStreamController
from fastcs_eiger.http_connection import HTTPConnection

CONTROLLERS = {"detector": EigerDetectorController, "stream": EigerStreamController, "monitor": EigerMonitorController}
WRITES = {
    "detector": [
        ("count_time", 0.01),
        ("photon_energy", 12000.0),
        ("nimages", 3),
        ("threshold_energy", 6500.0),
        ("trigger_mode", "exts"),
        ("beam_center_x", 12.5),
        ("threshold_difference_mode", "disabled"),
    ],
    "stream": [("mode", "enabled")],
    "monitor": [("mode", "enabled")],
}


async def subsystem(host: str, port: int, name: str) -> dict:
    connection = HTTPConnection(IPConnectionSettings(host, port))
    connection.open()
    queued: list = []

    async def queue(coros):
        queued.extend(coros)

    try:
        if (await connection.get("detector/api/1.8.0/status/state"))["value"] == "na":
            await connection.put("detector/api/1.8.0/command/initialize")
        controller = CONTROLLERS[name](connection, queue, "1.8.0")
        await controller.initialise()
        attrs = {n: a for n, a in controller.attributes.items() if isinstance(a, AttrR) and a._io_ref is not None}
        for attr in attrs.values():  # fastcs' own read path: value -> attribute datatype
            await controller._io.update(attr)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            for attr_name, new in WRITES[name]:
                attr = attrs[attr_name]
                assert isinstance(attr, AttrRW), attr_name
                await controller._io.send(attr, new)  # PUT, then fastcs re-reads the change list
            await asyncio.gather(*queued)
        values = {n: a.get() for n, a in attrs.items()}
        return {"ok": True, "attributes": len(attrs), "values": values, "stdout": printed.getvalue()}
    finally:
        await connection.close()


async def whole_controller(host: str, port: int) -> dict:
    controller = EigerController(IPConnectionSettings(host, port), api_version="1.8.0")
    await controller.initialise()
    counts = {name: len(sub.attributes) for name, sub in controller.sub_controllers.items()}
    await controller.connection.close()
    return {"ok": True, "attributes": counts}


async def main(host: str, port: int, names: list[str]) -> None:
    report = {}
    for name in names:
        try:
            report[name] = await (whole_controller(host, port) if name == "controller" else subsystem(host, port, name))
        except Exception as exc:  # report every subsystem, not only the first failure
            report[name] = {"ok": False, "error": repr(exc)[:500], "trace": traceback.format_exc()[-2000:]}
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
