"""app-calibration as its own process:
`python -m opendcu.app_calibration --grpc unix:/cal.sock --detector eiger2-500k --calibration-dir DIR
 --detector-grpc unix:/det.sock`.

It serves the `Calibration` service (app-detector loads the active set's mask and flatfields) and the `Control`
service of the `calibration` module; its procedures reach app-detector at --detector-grpc as a client.
"""

from __future__ import annotations

import argparse
from concurrent import futures
from pathlib import Path

import grpc

from opendcu.app_calibration.client import MAX_MESSAGE
from opendcu.app_calibration.detector_link import DetectorLink
from opendcu.app_calibration.module import CalibrationManager, build_calibration_subsystem
from opendcu.app_calibration.service import CalibrationService
from opendcu.app_calibration.store import CalibrationStore
from opendcu.app_detector.control.service import ControlService
from opendcu.lifecycle import announce_ready, child_process_setup, run_until
from opendcu.proto import calibration_pb2_grpc, control_pb2_grpc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grpc", required=True, help="gRPC address to serve, e.g. unix:/tmp/cal.sock")
    parser.add_argument("--detector", required=True, help="detector model name")
    parser.add_argument("--calibration-dir", required=True, type=Path, help="where the calibration sets are")
    parser.add_argument("--detector-grpc", required=True, help="app-detector's gRPC address")
    args = parser.parse_args(argv)
    stop = child_process_setup("app-calibration")
    store = CalibrationStore(args.calibration_dir, args.detector)
    manager = CalibrationManager(store, lambda cancelled: DetectorLink(args.detector_grpc, cancelled))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)],
    )
    calibration_pb2_grpc.add_CalibrationServicer_to_server(CalibrationService(manager), server)
    control = ControlService({"calibration": build_calibration_subsystem(manager)})
    control_pb2_grpc.add_ControlServicer_to_server(control, server)
    server.add_insecure_port(args.grpc)
    server.start()
    announce_ready({"grpc": args.grpc})

    def shutdown() -> None:
        run = manager.run
        if run is not None and manager.running:
            run.cancel()
            run.thread.join(timeout=10)
        server.stop(grace=1).wait()

    run_until(stop, shutdown)


if __name__ == "__main__":
    main()
