from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MonitorListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MonitorSeriesImages(_message.Message):
    __slots__ = ("series_id", "image_ids")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    series_id: int
    image_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, series_id: _Optional[int] = ..., image_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class MonitorImageList(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[MonitorSeriesImages]
    def __init__(self, series: _Optional[_Iterable[_Union[MonitorSeriesImages, _Mapping]]] = ...) -> None: ...

class MonitorImageRequest(_message.Message):
    __slots__ = ("which", "series_id", "image_id", "threshold", "timeout_ms", "chunk")
    class Which(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NEXT: _ClassVar[MonitorImageRequest.Which]
        LATEST: _ClassVar[MonitorImageRequest.Which]
        BY_ID: _ClassVar[MonitorImageRequest.Which]
    NEXT: MonitorImageRequest.Which
    LATEST: MonitorImageRequest.Which
    BY_ID: MonitorImageRequest.Which
    WHICH_FIELD_NUMBER: _ClassVar[int]
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    which: MonitorImageRequest.Which
    series_id: int
    image_id: int
    threshold: int
    timeout_ms: int
    chunk: bool
    def __init__(self, which: _Optional[_Union[MonitorImageRequest.Which, str]] = ..., series_id: _Optional[int] = ..., image_id: _Optional[int] = ..., threshold: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., chunk: _Optional[bool] = ...) -> None: ...

class MonitorImage(_message.Message):
    __slots__ = ("tiff", "series_id", "image_id", "chunk", "compression", "dtype", "shape")
    TIFF_FIELD_NUMBER: _ClassVar[int]
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    tiff: bytes
    series_id: int
    image_id: int
    chunk: bytes
    compression: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tiff: _Optional[bytes] = ..., series_id: _Optional[int] = ..., image_id: _Optional[int] = ..., chunk: _Optional[bytes] = ..., compression: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...
