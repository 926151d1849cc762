"""bslz4 against real EIGER2 FileWriter chunks (shared/golden): byte-identical re-encoding, exact decoding."""

from __future__ import annotations

import hashlib
import json

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from opendcu.codecs import Bslz4Codec

VARIANTS = ["bslz4", "bslz4_uint8", "bslz4_uint32"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("number", [1, 2])
def test_bslz4_chunks_roundtrip_byte_identically(golden_dir, variant, number):
    name = f"eiger2_simread7_2datafiles_4images_{variant}_data_{number:06d}.h5"
    expected = json.loads((golden_dir / "expected.json").read_text())
    codec = Bslz4Codec()
    with h5py.File(golden_dir / "h5-testfiles" / "datasets_eiger2" / name) as f:
        ds = f["/entry/data/data"]
        for i in range(ds.shape[0]):
            _, chunk = ds.id.read_direct_chunk((i, 0, 0))
            image = codec.decode(chunk, ds.dtype, ds.shape[1:])
            np.testing.assert_array_equal(image, ds[i])  # same pixels as hdf5plugin's decoder
            assert codec.encode(image).tobytes() == chunk  # and the very same bytes as the detector's
    frames = expected["hdf5"][f"h5-testfiles/datasets_eiger2/{name}"]["frames"]
    with h5py.File(golden_dir / "h5-testfiles" / "datasets_eiger2" / name) as f:
        for i, frame in enumerate(frames):
            assert hashlib.sha256(f["/entry/data/data"][i].tobytes()).hexdigest() == frame["sha256"]


def test_bslz4_edge_values_roundtrip():
    codec = Bslz4Codec()
    for dtype in (np.uint8, np.uint16, np.uint32):
        top = np.iinfo(dtype).max
        image = np.array([[0, 1, top, top - 1] * 5] * 7, dtype=dtype)  # 140 pixels: not a multiple of a block
        payload = codec.encode(image)
        assert int.from_bytes(payload[:8].tobytes(), "big") == image.nbytes
        assert int.from_bytes(payload[8:12].tobytes(), "big") == 8192
        np.testing.assert_array_equal(codec.decode(payload, dtype, image.shape), image)
