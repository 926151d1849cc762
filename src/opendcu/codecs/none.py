"""No compression (SIMPLON `compression = none`): the chunk is the image's little-endian bytes."""

from __future__ import annotations

import numpy as np


class NoneCodec:
    name = "none"

    def encode(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image)
        return image.reshape(-1).view(np.uint8)

    def decode(self, payload, dtype, shape) -> np.ndarray:
        buf = np.frombuffer(payload, dtype=np.uint8)
        dtype = np.dtype(dtype).newbyteorder("<")
        if buf.size != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"uncompressed chunk holds {buf.size} bytes, expected {np.prod(shape)} x {dtype.itemsize}")
        return buf.view(dtype).reshape(shape)

    def hdf5_filter(self, dtype) -> None:
        return None

    def stream_elem_size(self, dtype) -> None:
        return None  # stream V2 sends uncompressed data as a plain byte string
