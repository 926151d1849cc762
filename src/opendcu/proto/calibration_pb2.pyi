from opendcu.proto import control_pb2 as _control_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CalibrationRequest(_message.Message):
    __slots__ = ("detector", "photon_energy", "threshold_energy")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    PHOTON_ENERGY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_ENERGY_FIELD_NUMBER: _ClassVar[int]
    detector: str
    photon_energy: float
    threshold_energy: float
    def __init__(self, detector: _Optional[str] = ..., photon_energy: _Optional[float] = ..., threshold_energy: _Optional[float] = ...) -> None: ...

class DetectorCalibration(_message.Message):
    __slots__ = ("pixel_mask", "flatfield", "calibration_id", "dead_time_s")
    PIXEL_MASK_FIELD_NUMBER: _ClassVar[int]
    FLATFIELD_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_ID_FIELD_NUMBER: _ClassVar[int]
    DEAD_TIME_S_FIELD_NUMBER: _ClassVar[int]
    pixel_mask: _control_pb2.NdArray
    flatfield: _control_pb2.NdArray
    calibration_id: str
    dead_time_s: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, pixel_mask: _Optional[_Union[_control_pb2.NdArray, _Mapping]] = ..., flatfield: _Optional[_Union[_control_pb2.NdArray, _Mapping]] = ..., calibration_id: _Optional[str] = ..., dead_time_s: _Optional[_Iterable[float]] = ...) -> None: ...
