"""Client of app-calibration, used by app-detector."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

from opendcu.proto import calibration_pb2 as cpb
from opendcu.proto import calibration_pb2_grpc
from opendcu.proto.values import array_from_proto

MAX_MESSAGE = 256 << 20


@dataclass(frozen=True)
class CalibrationArrays:
    """A detector's calibration at one energy, as the pipeline uses it."""

    pixel_mask: np.ndarray  # uint32 [h, w], DECTRIS mask bits
    flatfield: np.ndarray  # float32 [h, w], factors
    calibration_id: str
    dead_time: tuple[float, ...] = ()  # measured dead time (s) of each module's read-out pixels; () = nominal


class CalibrationClient:
    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(
            address,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self.stub = calibration_pb2_grpc.CalibrationStub(self.channel)

    def calibration(self, detector: str, photon_energy: float, threshold_energy: float) -> CalibrationArrays:
        """The detector's pixel mask and flatfield at the given energies."""
        reply = self.stub.GetCalibration(
            cpb.CalibrationRequest(detector=detector, photon_energy=photon_energy, threshold_energy=threshold_energy),
            timeout=30,
            wait_for_ready=True,
        )
        return CalibrationArrays(
            pixel_mask=array_from_proto(reply.pixel_mask).astype(np.uint32),
            flatfield=array_from_proto(reply.flatfield).astype(np.float32),
            calibration_id=reply.calibration_id,
            dead_time=tuple(reply.dead_time_s),
        )

    def pixel_mask(self, detector: str, photon_energy: float, threshold_energy: float) -> np.ndarray:
        """The detector's pixel mask (uint32 [h, w]) at the given energies."""
        return self.calibration(detector, photon_energy, threshold_energy).pixel_mask

    def close(self) -> None:
        self.channel.close()
