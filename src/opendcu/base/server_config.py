"""The base system's server configuration: what `dcu serve` runs and where."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    detector: str = "eiger2-4m"
    data_dir: Path = field(default_factory=lambda: Path("opendcu-data"))
    #: app-calibration's calibration sets (HDF5), one folder per detector model
    calibration_dir: Path = field(default_factory=lambda: Path("opendcu-calibration"))
    stream_v1_port: int = 9999
    stream_v2_port: int = 31001
    pipeline_workers: int = 2
    #: JSON scene spec for the simulated modules ("" = the simulator's default)
    scene: str = ""
    #: shared memory for raw frames (MiB), partitioned per series into slots of one image's sub-frames
    raw_buffer_mib: int = 1024
    #: shared memory for compressed images (MiB), partitioned per series into slots of its images' bound
    image_buffer_mib: int = 512
    #: a secret every HTTP request must carry (bearer token or basic-auth password); "" = no access control
    auth_token: str = ""
    #: how long to wait for a child process to report ready (a loaded 2-core machine, loading numba's cached
    #: kernels and mapping the shared-memory rings, once took over 60 s for app-detector)
    start_timeout: float = 180.0
