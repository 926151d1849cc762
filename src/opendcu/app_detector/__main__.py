"""app-detector as its own process: `python -m opendcu.app_detector --config '<json>'`.

The config (written by the base system's app manager) names the detector model, the data directory,
app-calibration's gRPC address and where to serve gRPC; the module control addresses come in it too, or as one
JSON line on stdin (`{"modules": [...]}`), read once the data path is built.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent import futures
from pathlib import Path

import grpc

from opendcu.app_calibration.client import CalibrationClient
from opendcu.app_detector.control.acquisition import AcquisitionController
from opendcu.app_detector.control.detector_params import build_detector_subsystem
from opendcu.app_detector.control.service import ControlService
from opendcu.app_detector.control.simulator_params import build_simulator_subsystem
from opendcu.app_detector.datapath import DataPath, DataPathConfig
from opendcu.app_detector.interfaces.analysis.service import AnalysisService
from opendcu.app_detector.interfaces.monitor.service import MonitorService
from opendcu.geometry import get_model
from opendcu.hardware.module_driver import ModuleAddress, ModuleDriver
from opendcu.lifecycle import announce_ready, child_process_setup, run_until
from opendcu.proto import analysis_pb2_grpc, control_pb2_grpc, interfaces_pb2_grpc

log = logging.getLogger("opendcu.app_detector")

GRPC_MAX_MESSAGE = 256 << 20  # pixel masks / flatfields of a 16M detector


def modules_from_stdin() -> list[dict]:
    """The modules' addresses, one JSON line on stdin: the app manager starts app-detector while the simulated
    modules still start, and writes them once they are known. End of input instead: the DCU is gone."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("app-detector: no module addresses on stdin (and none in --config)")
    return json.loads(line)["modules"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="JSON configuration")
    config = json.loads(parser.parse_args(argv).config)
    stop = child_process_setup("app-detector")

    model = get_model(config["detector"])
    datapath = DataPath(
        model,
        DataPathConfig(
            data_dir=Path(config["data_dir"]),
            host=config.get("daq_host", "127.0.0.1"),
            pipeline_workers=config.get("pipeline_workers", 2),
            raw_buffer_bytes=config.get("raw_buffer_mib", 1024) << 20,
            image_buffer_bytes=config.get("image_buffer_mib", 512) << 20,
            stream_v1=f"tcp://{config.get('stream_host', '127.0.0.1')}:{config.get('stream_v1_port', 9999)}",
            stream_v2=f"tcp://{config.get('stream_host', '127.0.0.1')}:{config.get('stream_v2_port', 31001)}",
        ),
    )
    datapath.start()
    datapath.analysis.warm_up()  # in the background: workers ready before the first arm, not after it
    try:
        modules = config.get("modules") or modules_from_stdin()
    except BaseException:  # stopped before the modules were known
        datapath.close()
        raise
    driver = ModuleDriver([ModuleAddress(**m) for m in modules])
    calibration = CalibrationClient(config["calibration_address"])
    controller = AcquisitionController(
        model,
        datapath,
        driver,
        calibration=lambda energy, threshold: calibration.calibration(model.name, energy, threshold),
    )
    detector = build_detector_subsystem(model, controller)
    controller.bind(detector)
    subsystems = {
        "detector": detector,
        "filewriter": datapath.filewriter.subsystem,
        "stream": datapath.stream.subsystem,
        "monitor": datapath.monitor.subsystem,
        "simulator": build_simulator_subsystem(controller),
        "analysis": datapath.analysis.subsystem,
    }

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
        ],
    )
    control_pb2_grpc.add_ControlServicer_to_server(ControlService(subsystems), server)
    interfaces_pb2_grpc.add_MonitorServicer_to_server(MonitorService(datapath.monitor), server)
    analysis_pb2_grpc.add_AnalysisServicer_to_server(AnalysisService(datapath.analysis), server)
    address = config["grpc_address"]
    server.add_insecure_port(address)
    server.start()
    announce_ready({"grpc": address})
    log.info("app-detector serving %s (%s) on %s", model.name, model.description, address)

    def shutdown() -> None:
        log.info("app-detector stopping")
        try:
            controller.shut_down()  # ends a running series: files closed with their images, the rest reported lost
            server.stop(grace=1).wait()
        finally:
            datapath.close()
            driver.close()
            calibration.close()

    run_until(stop, shutdown)


if __name__ == "__main__":
    main()
