from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Spots(_message.Message):
    __slots__ = ("x", "y", "intensity", "d", "npix")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_FIELD_NUMBER: _ClassVar[int]
    D_FIELD_NUMBER: _ClassVar[int]
    NPIX_FIELD_NUMBER: _ClassVar[int]
    x: _containers.RepeatedScalarFieldContainer[float]
    y: _containers.RepeatedScalarFieldContainer[float]
    intensity: _containers.RepeatedScalarFieldContainer[float]
    d: _containers.RepeatedScalarFieldContainer[float]
    npix: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, x: _Optional[_Iterable[float]] = ..., y: _Optional[_Iterable[float]] = ..., intensity: _Optional[_Iterable[float]] = ..., d: _Optional[_Iterable[float]] = ..., npix: _Optional[_Iterable[int]] = ...) -> None: ...

class RadialProfile(_message.Message):
    __slots__ = ("unit", "radial", "intensity", "azimuthal", "cake")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    RADIAL_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_FIELD_NUMBER: _ClassVar[int]
    AZIMUTHAL_FIELD_NUMBER: _ClassVar[int]
    CAKE_FIELD_NUMBER: _ClassVar[int]
    unit: str
    radial: _containers.RepeatedScalarFieldContainer[float]
    intensity: _containers.RepeatedScalarFieldContainer[float]
    azimuthal: _containers.RepeatedScalarFieldContainer[float]
    cake: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, unit: _Optional[str] = ..., radial: _Optional[_Iterable[float]] = ..., intensity: _Optional[_Iterable[float]] = ..., azimuthal: _Optional[_Iterable[float]] = ..., cake: _Optional[_Iterable[float]] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("series_id", "image_id", "image_number", "phi_deg", "n_spots", "n_spots_no_ice", "n_spots_low_res", "total_intensity", "d_min", "is_hit", "background", "ice_score", "overloaded", "n_strong_pixels", "indexed", "n_indexed", "fraction_indexed", "unit_cell", "ub_matrix", "rmsd", "latency_ms", "analysis_ms", "timings_ms", "images_received", "images_analysed", "images_skipped", "decimated", "spots", "profile", "indexing_skipped")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PHI_DEG_FIELD_NUMBER: _ClassVar[int]
    N_SPOTS_FIELD_NUMBER: _ClassVar[int]
    N_SPOTS_NO_ICE_FIELD_NUMBER: _ClassVar[int]
    N_SPOTS_LOW_RES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INTENSITY_FIELD_NUMBER: _ClassVar[int]
    D_MIN_FIELD_NUMBER: _ClassVar[int]
    IS_HIT_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    ICE_SCORE_FIELD_NUMBER: _ClassVar[int]
    OVERLOADED_FIELD_NUMBER: _ClassVar[int]
    N_STRONG_PIXELS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    N_INDEXED_FIELD_NUMBER: _ClassVar[int]
    FRACTION_INDEXED_FIELD_NUMBER: _ClassVar[int]
    UNIT_CELL_FIELD_NUMBER: _ClassVar[int]
    UB_MATRIX_FIELD_NUMBER: _ClassVar[int]
    RMSD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_MS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_ANALYSED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DECIMATED_FIELD_NUMBER: _ClassVar[int]
    SPOTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    INDEXING_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    series_id: int
    image_id: int
    image_number: int
    phi_deg: float
    n_spots: int
    n_spots_no_ice: int
    n_spots_low_res: int
    total_intensity: float
    d_min: float
    is_hit: bool
    background: float
    ice_score: float
    overloaded: bool
    n_strong_pixels: int
    indexed: bool
    n_indexed: int
    fraction_indexed: float
    unit_cell: _containers.RepeatedScalarFieldContainer[float]
    ub_matrix: _containers.RepeatedScalarFieldContainer[float]
    rmsd: float
    latency_ms: float
    analysis_ms: float
    timings_ms: _containers.ScalarMap[str, float]
    images_received: int
    images_analysed: int
    images_skipped: int
    decimated: bool
    spots: Spots
    profile: RadialProfile
    indexing_skipped: bool
    def __init__(self, series_id: _Optional[int] = ..., image_id: _Optional[int] = ..., image_number: _Optional[int] = ..., phi_deg: _Optional[float] = ..., n_spots: _Optional[int] = ..., n_spots_no_ice: _Optional[int] = ..., n_spots_low_res: _Optional[int] = ..., total_intensity: _Optional[float] = ..., d_min: _Optional[float] = ..., is_hit: _Optional[bool] = ..., background: _Optional[float] = ..., ice_score: _Optional[float] = ..., overloaded: _Optional[bool] = ..., n_strong_pixels: _Optional[int] = ..., indexed: _Optional[bool] = ..., n_indexed: _Optional[int] = ..., fraction_indexed: _Optional[float] = ..., unit_cell: _Optional[_Iterable[float]] = ..., ub_matrix: _Optional[_Iterable[float]] = ..., rmsd: _Optional[float] = ..., latency_ms: _Optional[float] = ..., analysis_ms: _Optional[float] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., images_received: _Optional[int] = ..., images_analysed: _Optional[int] = ..., images_skipped: _Optional[int] = ..., decimated: _Optional[bool] = ..., spots: _Optional[_Union[Spots, _Mapping]] = ..., profile: _Optional[_Union[RadialProfile, _Mapping]] = ..., indexing_skipped: _Optional[bool] = ...) -> None: ...

class SeriesSummary(_message.Message):
    __slots__ = ("series_id", "nimages", "finished", "images_received", "images_analysed", "images_skipped", "images_strided", "decimated", "hit_rate", "indexing_rate", "median_d_min", "median_latency_ms", "found_cell", "hits", "best_d_min", "median_n_spots", "max_n_spots", "images_lost")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    NIMAGES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_ANALYSED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_STRIDED_FIELD_NUMBER: _ClassVar[int]
    DECIMATED_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    INDEXING_RATE_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_D_MIN_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    FOUND_CELL_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    BEST_D_MIN_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_N_SPOTS_FIELD_NUMBER: _ClassVar[int]
    MAX_N_SPOTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_LOST_FIELD_NUMBER: _ClassVar[int]
    series_id: int
    nimages: int
    finished: bool
    images_received: int
    images_analysed: int
    images_skipped: int
    images_strided: int
    decimated: bool
    hit_rate: float
    indexing_rate: float
    median_d_min: float
    median_latency_ms: float
    found_cell: _containers.RepeatedScalarFieldContainer[float]
    hits: int
    best_d_min: float
    median_n_spots: float
    max_n_spots: int
    images_lost: int
    def __init__(self, series_id: _Optional[int] = ..., nimages: _Optional[int] = ..., finished: _Optional[bool] = ..., images_received: _Optional[int] = ..., images_analysed: _Optional[int] = ..., images_skipped: _Optional[int] = ..., images_strided: _Optional[int] = ..., decimated: _Optional[bool] = ..., hit_rate: _Optional[float] = ..., indexing_rate: _Optional[float] = ..., median_d_min: _Optional[float] = ..., median_latency_ms: _Optional[float] = ..., found_cell: _Optional[_Iterable[float]] = ..., hits: _Optional[int] = ..., best_d_min: _Optional[float] = ..., median_n_spots: _Optional[float] = ..., max_n_spots: _Optional[int] = ..., images_lost: _Optional[int] = ...) -> None: ...

class ResultsRequest(_message.Message):
    __slots__ = ("series_id", "start", "limit", "spots", "profile")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SPOTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    series_id: int
    start: int
    limit: int
    spots: bool
    profile: bool
    def __init__(self, series_id: _Optional[int] = ..., start: _Optional[int] = ..., limit: _Optional[int] = ..., spots: _Optional[bool] = ..., profile: _Optional[bool] = ...) -> None: ...

class ResultList(_message.Message):
    __slots__ = ("summary", "results")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    summary: SeriesSummary
    results: _containers.RepeatedCompositeFieldContainer[ImageResult]
    def __init__(self, summary: _Optional[_Union[SeriesSummary, _Mapping]] = ..., results: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ...) -> None: ...

class ImageRequest(_message.Message):
    __slots__ = ("series_id", "image_id")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    series_id: int
    image_id: int
    def __init__(self, series_id: _Optional[int] = ..., image_id: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("spots", "profile")
    SPOTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    spots: bool
    profile: bool
    def __init__(self, spots: _Optional[bool] = ..., profile: _Optional[bool] = ...) -> None: ...

class AnalysisEvent(_message.Message):
    __slots__ = ("series_start", "result", "series_end")
    SERIES_START_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SERIES_END_FIELD_NUMBER: _ClassVar[int]
    series_start: SeriesSummary
    result: ImageResult
    series_end: SeriesSummary
    def __init__(self, series_start: _Optional[_Union[SeriesSummary, _Mapping]] = ..., result: _Optional[_Union[ImageResult, _Mapping]] = ..., series_end: _Optional[_Union[SeriesSummary, _Mapping]] = ...) -> None: ...
