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
    stream_v1_port: int = 9999
    stream_v2_port: int = 31001
    pipeline_workers: int = 2
    #: JSON scene spec for the simulated modules ("" = the simulator's default)
    scene: str = ""
    #: most sub-frames per image (auto-summation), what the raw slots are sized for (0: app-detector's default)
    max_nframes_sum: int = 0
    #: how long to wait for a child process to report ready
    start_timeout: float = 60.0
