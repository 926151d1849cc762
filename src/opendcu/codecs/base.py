"""The codec interfaces, in the style of zarr-python v3: small objects that each do one step.

- An `ArrayCodec` turns an image into another image (2x2 binning, the 8-bit float counter): lossy, shape/dtype
  changing, applied before compression.
- An `ImageCodec` turns an image into the exact bytes of one HDF5 chunk (bslz4, lz4, none) and back.
- A `CodecChain` is array codecs followed by one image codec.

The pipeline fuses the array codecs into its correction pass (`app_detector/pipeline/kernels.py`); the codec
objects here are the same transforms, standalone, for readers, tests and benchmarks.
"""

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

    def encode(self, image: np.ndarray) -> np.ndarray:
        """Compress one image; the result (uint8) is the chunk payload, ready for direct chunk write."""
        ...

    def decode(self, payload: bytes | memoryview | np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """Inverse of encode."""
        ...

    def hdf5_filter(self, dtype: np.dtype) -> Hdf5Filter | None:
        """The HDF5 filter that decodes these chunks, or None for uncompressed data."""
        ...

    def stream_elem_size(self, dtype: np.dtype) -> int | None:
        """`elem_size` of the stream V2 tag 56500 `[name, elem_size, bytes]`; None: send plain bytes (no tag)."""
        ...


class ArrayCodec(Protocol):
    """An image -> image transform applied before the ImageCodec."""

    name: str

    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def encoded_shape(self, shape: tuple[int, int]) -> tuple[int, int]: ...

    def encoded_dtype(self, dtype: np.dtype) -> np.dtype: ...


@dataclass(frozen=True)
class CodecChain:
    """Array codecs, then one image codec: `encode` gives the chunk bytes of an image."""

    array_codecs: tuple[ArrayCodec, ...]
    image_codec: ImageCodec

    def encode(self, image: np.ndarray) -> np.ndarray:
        for codec in self.array_codecs:
            image = codec.encode(image)
        return self.image_codec.encode(image)

    def encoded_shape_dtype(self, shape: tuple[int, int], dtype: np.dtype) -> tuple[tuple[int, int], np.dtype]:
        """Shape and dtype of the image the chunk holds."""
        dtype = np.dtype(dtype)
        for codec in self.array_codecs:
            shape, dtype = codec.encoded_shape(shape), codec.encoded_dtype(dtype)
        return shape, dtype

    def decode(self, payload, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """The image stored in the chunk (array codecs are not inverted: binning and float8 codes stay)."""
        out_shape, out_dtype = self.encoded_shape_dtype(shape, dtype)
        return self.image_codec.decode(payload, out_dtype, out_shape)
