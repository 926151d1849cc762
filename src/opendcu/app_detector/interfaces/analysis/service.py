"""The gRPC Analysis service of app-detector: results of the live analysis (settings go through Control)."""

from __future__ import annotations

import queue

import grpc

from opendcu.app_detector.interfaces.analysis.interface import AnalysisInterface
from opendcu.proto import analysis_pb2 as pb
from opendcu.proto import analysis_pb2_grpc
from opendcu.proto.analysis_values import result_to_proto, summary_to_proto


class AnalysisService(analysis_pb2_grpc.AnalysisServicer):
    def __init__(self, interface: AnalysisInterface):
        self.interface = interface

    def _series(self, series_id: int, context: grpc.ServicerContext):
        results = self.interface.store.series(series_id or None)
        if results is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no analysis results for series {series_id or '(latest)'}")
        return results

    def GetResults(self, request: pb.ResultsRequest, context) -> pb.ResultList:
        results = self._series(request.series_id, context)
        records = self.interface.store.records(results.series_id, request.start, request.limit or 1000)
        return pb.ResultList(
            summary=summary_to_proto(results.summary()),
            results=[result_to_proto(r, request.spots, request.profile) for r in records],
        )

    def GetResult(self, request: pb.ImageRequest, context) -> pb.ImageResult:
        results = self._series(request.series_id, context)
        record = results.records.get(request.image_id)
        if record is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"image {request.image_id} of series {results.series_id} was not analysed"
            )
        return result_to_proto(record)

    def Watch(self, request: pb.WatchRequest, context):
        events = self.interface.store.subscribe()
        try:
            while context.is_active():
                try:
                    event = events.get(timeout=0.5)
                except queue.Empty:
                    continue
                kind = event.get("event")
                if kind == "result":
                    yield pb.AnalysisEvent(result=result_to_proto(event, request.spots, request.profile))
                elif kind == "series_start":
                    yield pb.AnalysisEvent(series_start=summary_to_proto(event))
                elif kind == "series_end":
                    yield pb.AnalysisEvent(series_end=summary_to_proto(event))
        finally:
            self.interface.store.unsubscribe(events)
