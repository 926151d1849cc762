"""app-calibration's gRPC services: `Calibration` (what app-detector loads) and `Control` (the `calibration`
module of the REST API)."""

from __future__ import annotations

import grpc
import numpy as np

from opendcu.app_calibration.module import CalibrationManager
from opendcu.app_calibration.store import StoreError
from opendcu.proto import calibration_pb2 as cpb
from opendcu.proto import calibration_pb2_grpc
from opendcu.proto.values import array_to_proto


class CalibrationService(calibration_pb2_grpc.CalibrationServicer):
    def __init__(self, manager: CalibrationManager):
        self.manager = manager

    def GetCalibration(self, request: cpb.CalibrationRequest, context) -> cpb.DetectorCalibration:
        store = self.manager.store
        if request.detector != store.detector:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"this app-calibration holds the calibration of {store.detector}, not {request.detector}",
            )
        energies = (request.photon_energy, request.threshold_energy)
        try:
            mask, flatfield, calibration_id = store.calibration(*energies)
        except StoreError as exc:
            if not self.manager.running:
                context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            # a procedure moves the energies where the active set may have no flatfield; it measures with the
            # flatfield correction off, and puts the energies back when it ends
            cal = store.active()
            mask, flatfield = cal.pixel_mask, np.ones(cal.pixel_mask.shape, dtype=np.float32)
            calibration_id = f"{store.detector}/{cal.set_id}/no flatfield (calibration procedure running)"
        self.manager.last_energies = energies
        dead_time = store.active().dead_time
        return cpb.DetectorCalibration(
            pixel_mask=array_to_proto(mask),
            flatfield=array_to_proto(flatfield),
            calibration_id=calibration_id,
            dead_time_s=[] if dead_time is None else [float(t) for t in dead_time],
        )
