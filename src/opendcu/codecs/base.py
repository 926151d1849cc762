"""The codec interface: a small object that turns an image into the exact bytes of an HDF5 chunk and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Hdf5Filter:
    """How an HDF5 dataset declares chunks made by this codec (filter id, cd_values, flags)."""

    filter_id: int
    #: client data passed to H5Pset_filter (the filter's set_local may extend it)
    cd_values: tuple[int, ...]
    flags: int = 0  # 0 = mandatory, as real EIGER2 files


class ImageCodec(Protocol):
    """Encodes a 2-D image into one self-contained chunk (the bytes a FileWriter and a stream both carry)."""

    #: the SIMPLON `compression` name ("bslz4", "lz4", "none")
    name: str

    def encode(self, image: np.ndarray) -> bytes | np.ndarray:
        """Compress one image; the result is the chunk payload, ready for direct chunk write."""
        ...

    def decode(self, payload: bytes | memoryview | np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """Inverse of encode."""
        ...

    def hdf5_filter(self, dtype: np.dtype) -> Hdf5Filter | None:
        """The HDF5 filter that decodes these chunks, or None for uncompressed data."""
        ...
