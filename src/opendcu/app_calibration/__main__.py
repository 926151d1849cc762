"""app-calibration as its own process: `python -m opendcu.app_calibration --grpc unix:/path.sock`."""

from __future__ import annotations

import argparse
from concurrent import futures

import grpc

from opendcu.app_calibration.client import MAX_MESSAGE
from opendcu.app_calibration.service import CalibrationService
from opendcu.lifecycle import announce_ready, child_process_setup, run_until
from opendcu.proto import calibration_pb2_grpc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grpc", required=True, help="gRPC address to serve, e.g. unix:/tmp/cal.sock")
    args = parser.parse_args(argv)
    stop = child_process_setup("app-calibration")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)],
    )
    calibration_pb2_grpc.add_CalibrationServicer_to_server(CalibrationService(), server)
    server.add_insecure_port(args.grpc)
    server.start()
    announce_ready({"grpc": args.grpc})
    run_until(stop, lambda: server.stop(grace=1).wait())


if __name__ == "__main__":
    main()
