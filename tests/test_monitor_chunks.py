"""The base system's decoder of monitor chunks (the Web-UI's live view) gives the pixels `opendcu.codecs` gives,
for every compression and bit depth, and refuses chunks that are not the image they claim to be."""

from __future__ import annotations

import numpy as np
import pytest

from opendcu.base.rest.monitor_chunks import ChunkError, decode_chunk
from opendcu.codecs import get_codec


@pytest.mark.parametrize("compression", ["bslz4", "lz4", "none"])
@pytest.mark.parametrize("dtype", ["<u1", "<u2", "<u4"])
def test_decodes_what_the_codecs_encode(compression: str, dtype: str) -> None:
    rng = np.random.default_rng(5)
    image = rng.poisson(3.0, (515, 1030)).astype(dtype)
    image[7, :] = np.iinfo(image.dtype).max  # the error value of a lost packet's row
    codec = get_codec(compression)
    chunk = bytes(np.frombuffer(codec.encode(image), dtype=np.uint8))
    got = decode_chunk(chunk, compression, dtype, image.shape)
    np.testing.assert_array_equal(got, codec.decode(chunk, np.dtype(dtype), image.shape))
    np.testing.assert_array_equal(got, image)


def test_refuses_chunks_that_are_not_the_image_they_claim() -> None:
    image = np.arange(64 * 64, dtype="<u2").reshape(64, 64)
    chunk = bytes(np.frombuffer(get_codec("bslz4").encode(image), dtype=np.uint8))
    with pytest.raises(ChunkError, match="bytes"):
        decode_chunk(chunk, "bslz4", "<u4", image.shape)  # the header says 8192 bytes, not 16384
    with pytest.raises(ChunkError, match="shorter"):
        decode_chunk(chunk[:5], "bslz4", "<u2", image.shape)
    with pytest.raises(ChunkError, match="corrupt"):
        decode_chunk(chunk[:12] + bytes(len(chunk) - 12), "bslz4", "<u2", image.shape)
    with pytest.raises(ChunkError, match="unknown"):
        decode_chunk(chunk, "zstd", "<u2", image.shape)
    with pytest.raises(ChunkError, match="expected"):
        decode_chunk(image.tobytes()[:100], "none", "<u2", image.shape)
