"""DECTRIS' DEigerClient (loaded from the libertem-live wheel) through a whole beamline workflow; one JSON report.

    python deiger_workflow.py HOST PORT WORKDIR

Every step records OK with a short result or FAIL with the error, so a test can name exactly which failed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import tifffile


def load_deigerclient():
    dist = importlib.metadata.distribution("libertem-live")
    rel = next(f for f in dist.files if str(f).endswith("dectris/DEigerClient.py"))
    spec = importlib.util.spec_from_file_location("DEigerClient", dist.locate_file(rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEigerClient


def main(host: str, port: int, workdir: Path) -> None:
    client = load_deigerclient()(host, port)
    client.setConnectionTimeout(60)
    report: dict[str, dict] = {}

    def step(name, call):
        try:
            result = call()
            report[name] = {
                "ok": True,
                "result": result
                if isinstance(result, (int, float, str, list, dict, type(None)))
                else repr(result)[:100],
            }
        except Exception as exc:
            report[name] = {"ok": False, "error": repr(exc)[:300]}

    step("version", client.version)
    step("filewriter version", lambda: client.version("filewriter"))
    step("initialize", lambda: client.sendDetectorCommand("initialize"))
    step("state", lambda: client.detectorStatus("state")["value"])
    step("config keys", lambda: len(client.listDetectorConfigParams()))
    step("commands", client.listDetectorCommands)
    step("full config", lambda: len(client.detectorConfig()))
    step(
        "set multiple",
        lambda: sorted(
            client.setDetectorConfigMultiple(
                "nimages", 3, "count_time", 0.02, "frame_time", 0.02, "trigger_mode", "ints"
            )
        ),
    )
    step("read back", lambda: [client.detectorConfig(k)["value"] for k in ("nimages", "trigger_mode")])

    def mask_roundtrip():
        data = client.detectorConfig("pixel_mask", dataType="tif")
        mask = tifffile.imread(io.BytesIO(data))
        mask[1, 2] = 4
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, mask)
        client.setDetectorConfig("pixel_mask", buffer.getvalue(), dataType="tif")
        again = tifffile.imread(io.BytesIO(client.detectorConfig("pixel_mask", dataType="tif")))
        return [list(mask.shape), int(again[1, 2]), int(np.count_nonzero(again != mask))]

    step("pixel_mask tiff", mask_roundtrip)
    step("fw clear", lambda: client.sendFileWriterCommand("clear"))
    step("fw mode", lambda: client.setFileWriterConfig("mode", "enabled"))
    step("fw name_pattern", lambda: client.setFileWriterConfig("name_pattern", "deiger_$id"))
    step("stream mode", lambda: client.setStreamConfig("mode", "enabled"))
    step("monitor mode", lambda: client.setMonitorConfig("mode", "enabled"))
    step("arm", lambda: client.sendDetectorCommand("arm"))
    step("state armed", lambda: client.detectorStatus("state")["value"])
    step("trigger", lambda: client.sendDetectorCommand("trigger"))
    step("disarm", lambda: client.sendDetectorCommand("disarm"))
    step("state after", lambda: client.detectorStatus("state")["value"])
    step("fw status files", lambda: client.fileWriterStatus("files")["value"])
    step("fw files", client.fileWriterFiles)

    def download():
        client.fileWriterSave("deiger_1_master.h5", str(workdir))
        client.fileWriterSave("deiger_1_data_000001.h5", str(workdir))
        return sorted(p.name for p in workdir.iterdir())

    step("fw download", download)
    step("fw file bytes", lambda: len(client.fileWriterFiles("deiger_1_data_000001.h5")))
    step("fw delete", lambda: client.fileWriterFiles("deiger_1_data_000001.h5", "DELETE"))
    step("stream state", lambda: client.streamStatus("state")["value"])
    step("monitor images", client.monitorImages)
    step("monitor image", lambda: list(tifffile.imread(io.BytesIO(client.monitorImages("monitor"))).shape))
    step("system restart", lambda: client.sendSystemCommand("restart"))
    step("state after restart", lambda: client.detectorStatus("state")["value"])
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
