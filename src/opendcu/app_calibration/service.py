"""app-calibration's gRPC service."""

from __future__ import annotations

import grpc

from opendcu.app_calibration.store import calibration_for
from opendcu.proto import calibration_pb2 as cpb
from opendcu.proto import calibration_pb2_grpc
from opendcu.proto.values import array_to_proto


class CalibrationService(calibration_pb2_grpc.CalibrationServicer):
    def GetCalibration(self, request: cpb.CalibrationRequest, context) -> cpb.DetectorCalibration:
        try:
            cal = calibration_for(request.detector, request.photon_energy, request.threshold_energy)
        except ValueError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return cpb.DetectorCalibration(
            pixel_mask=array_to_proto(cal.pixel_mask),
            flatfield=array_to_proto(cal.flatfield),
            calibration_id=cal.calibration_id,
        )
