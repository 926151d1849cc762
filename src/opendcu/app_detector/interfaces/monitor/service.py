"""gRPC service through which the base system fetches Monitor images (proto/interfaces.proto)."""

from __future__ import annotations

import logging

import grpc

from opendcu.app_detector.control.errors import ControlError
from opendcu.app_detector.interfaces.monitor.monitor import Monitor
from opendcu.proto import interfaces_pb2 as pb
from opendcu.proto import interfaces_pb2_grpc

log = logging.getLogger(__name__)


class MonitorService(interfaces_pb2_grpc.MonitorServicer):
    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    def ListImages(self, request: pb.MonitorListRequest, context) -> pb.MonitorImageList:
        return pb.MonitorImageList(
            series=[pb.MonitorSeriesImages(series_id=s, image_ids=ids) for s, ids in self.monitor.list_images()]
        )

    def GetImage(self, request: pb.MonitorImageRequest, context) -> pb.MonitorImage:
        timeout = request.timeout_ms / 1000
        try:
            if request.which == pb.MonitorImageRequest.NEXT:
                image = self.monitor.next_image(timeout)
            elif request.which == pb.MonitorImageRequest.LATEST:
                image = self.monitor.latest_image(timeout)
            else:
                image = self.monitor.image(request.series_id, request.image_id, request.threshold or 1)
            if request.chunk:  # a tenth of a TIFF's bytes for a bslz4 image, and no decoding in app-detector
                return pb.MonitorImage(
                    chunk=image.chunk,
                    compression=image.compression,
                    dtype=image.dtype.str,
                    shape=list(image.shape),
                    series_id=image.series.series_id,
                    image_id=image.image_id,
                )
            return pb.MonitorImage(tiff=image.tiff(), series_id=image.series.series_id, image_id=image.image_id)
        except ControlError as exc:
            context.abort(exc.code, str(exc))
        except Exception as exc:  # a bug must not kill the service
            log.exception("monitor image request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
        raise AssertionError("context.abort raises")
