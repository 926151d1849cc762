"""Codecs against real DECTRIS bytes (shared/golden): byte-identical re-encoding and exact decoding of the EIGER2
FileWriter chunks and of the stream V2 channel payloads; our chunks decoded by hdf5plugin and dectris-compression."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import cbor2
import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 filters)
import numpy as np
import pytest

from opendcu.codecs import Bslz4Codec, Lz4Codec, NoneCodec, get_codec

H5_DIR = Path("h5-testfiles") / "datasets_eiger2"
H5_VARIANTS = ["bslz4", "bslz4_uint8", "bslz4_uint32", "lz4"]
STREAM_DIRS = [
    "r500k_bm_bslz4_8bit",
    "r500k_bm_bslz4_16bit",
    "r500k_bm_bslz4_32bit",
    "r500k_bm_lz4_8bit",
    "r500k_bm_lz4_16bit",
]
TYPED_ARRAY_DTYPES = {64: np.uint8, 69: np.dtype("<u2"), 70: np.dtype("<u4")}


@pytest.fixture(scope="module")
def expected(golden_dir) -> dict:
    return json.loads((golden_dir / "expected.json").read_text())


@pytest.mark.parametrize("variant", H5_VARIANTS)
@pytest.mark.parametrize("number", [1, 2])
def test_h5_chunks_roundtrip_byte_identically(golden_dir, expected, variant, number):
    name = f"eiger2_simread7_2datafiles_4images_{variant}_data_{number:06d}.h5"
    codec = get_codec("lz4" if variant == "lz4" else "bslz4")
    frames = expected["hdf5"][f"{H5_DIR.as_posix()}/{name}"]["frames"]
    with h5py.File(golden_dir / H5_DIR / name) as f:
        ds = f["/entry/data/data"]
        assert ds.id.get_create_plist().get_filter(0)[0] == codec.hdf5_filter(ds.dtype).filter_id
        for i, frame in enumerate(frames):
            _, chunk = ds.id.read_direct_chunk((i, 0, 0))
            image = codec.decode(chunk, ds.dtype, ds.shape[1:])
            np.testing.assert_array_equal(image, ds[i])  # same pixels as hdf5plugin's decoder
            assert hashlib.sha256(image.tobytes()).hexdigest() == frame["sha256"]
            assert codec.encode(image).tobytes() == chunk  # and the very same bytes as the detector's


def stream_channels(golden_dir: Path):
    """(file, channel, typed-array tag, algorithm, elem_size, payload, shape) of every golden image message."""
    for directory in STREAM_DIRS:
        for path in sorted((golden_dir / "stream_v2" / directory).glob("00000[1-3].cbor")):
            message = cbor2.loads(path.read_bytes())
            for channel, value in message["data"].items():
                dims, typed = value.value  # tag 40: [dims, typed array]
                algorithm, elem_size, payload = typed.value.value  # tag 56500 inside the typed-array tag
                yield path, channel, typed.tag, algorithm, elem_size, payload, tuple(dims)


def test_stream_v2_channels_roundtrip_byte_identically(golden_dir, expected):
    seen = set()
    for path, channel, tag, algorithm, elem_size, payload, shape in stream_channels(golden_dir):
        dtype = np.dtype(TYPED_ARRAY_DTYPES[tag])
        want = expected["stream_v2"][path.relative_to(golden_dir).as_posix()]["data"][channel]
        codec = get_codec(algorithm)
        assert codec.stream_elem_size(dtype) == elem_size == want["elem_size"]
        image = codec.decode(payload, dtype, shape)
        assert hashlib.sha256(image.tobytes()).hexdigest() == want["sha256"]
        assert int(image.sum(dtype=np.uint64)) == want["sum"]
        assert int((image == np.iinfo(dtype).max).sum()) == want["n_max"]
        assert codec.encode(image).tobytes() == payload
        seen.add((algorithm, dtype.itemsize))
    # bslz4 8/16/32-bit and lz4 8/16-bit, 3 images x 3 channels each
    assert seen == {("bslz4", 1), ("bslz4", 2), ("bslz4", 4), ("lz4", 1), ("lz4", 2)}


def simulated_frames() -> list[np.ndarray]:
    """Detector-like images of each dtype with edge values: zeros, the top value (gaps), top-1, random counts."""
    rng = np.random.default_rng(7)
    frames = []
    for dtype in (np.uint8, np.uint16, np.uint32):
        top = np.iinfo(dtype).max
        image = rng.poisson(0.7, (512, 1028)).astype(dtype)
        image[:, 255:259] = top  # a masked band
        image[100, :] = top - 1
        image[200:210, 500:520] = rng.integers(0, top, (10, 20), dtype=dtype, endpoint=True)
        frames.append(image)
    frames.append(np.random.default_rng(8).integers(0, 2**16, (64, 1024), dtype=np.uint16))  # incompressible
    frames.append(np.array([[0, 1, 2**32 - 1, 2**32 - 2] * 5] * 7, dtype=np.uint32))  # 140 px: a short last block
    return frames


@pytest.mark.parametrize("name", ["bslz4", "lz4", "none"])
def test_our_chunks_decode_through_hdf5plugin(tmp_path, name):
    codec = get_codec(name)
    path = tmp_path / f"{name}.h5"
    frames = simulated_frames()
    with h5py.File(path, "w") as f:
        for i, image in enumerate(frames):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((1, *image.shape))
            filt = codec.hdf5_filter(image.dtype)
            if filt is not None:
                dcpl.set_filter(filt.filter_id, h5py.h5z.FLAG_MANDATORY, filt.cd_values)
            space = h5py.h5s.create_simple((1, *image.shape))
            dsid = h5py.h5d.create(f.id, f"d{i}".encode(), h5py.h5t.py_create(image.dtype), space, dcpl=dcpl)
            dsid.write_direct_chunk((0, 0, 0), codec.encode(image).tobytes())
    with h5py.File(path) as f:
        for i, image in enumerate(frames):
            np.testing.assert_array_equal(f[f"d{i}"][0], image)


DECTRIS_DECODE = """
import hashlib, sys
from dectris.compression import decompress
for line in sys.stdin:
    algorithm, elem_size, path = line.split()
    data = decompress(open(path, "rb").read(), algorithm, elem_size=int(elem_size))
    print(hashlib.sha256(data).hexdigest(), flush=True)
"""


def test_our_chunks_decode_with_dectris_compression(tmp_path, clients_python):
    """DECTRIS' own decoder (in the clients venv) reads every chunk we produce to the exact pixels."""
    jobs, want = [], []
    for name in ("bslz4", "lz4"):
        codec = get_codec(name)
        for i, image in enumerate(simulated_frames()):
            path = tmp_path / f"{name}_{i}.bin"
            path.write_bytes(codec.encode(image).tobytes())
            jobs.append(f"{name} {image.dtype.itemsize} {path}")
            want.append(hashlib.sha256(image.tobytes()).hexdigest())
    out = subprocess.run(
        [str(clients_python), "-c", DECTRIS_DECODE],
        input="\n".join(jobs) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == want


def test_codec_names_and_filters():
    assert list(get_codec(n).name for n in ("lz4", "bslz4", "none")) == ["lz4", "bslz4", "none"]
    assert Bslz4Codec().hdf5_filter(np.uint16).filter_id == 32008
    assert Lz4Codec().hdf5_filter(np.uint16).cd_values == ()  # as real EIGER2 files
    assert NoneCodec().hdf5_filter(np.uint16) is None and NoneCodec().stream_elem_size(np.uint16) is None
    with pytest.raises(ValueError, match="unsupported compression"):
        get_codec("zip")


@pytest.mark.parametrize("name", ["bslz4", "lz4", "none"])
def test_truncated_or_mismatched_chunks_are_rejected(name):
    codec = get_codec(name)
    image = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    payload = codec.encode(image)
    np.testing.assert_array_equal(codec.decode(payload, np.uint16, (64, 64)), image)
    with pytest.raises(ValueError):
        codec.decode(payload, np.uint16, (64, 65))  # the chunk holds a different number of pixels
    for cut in (8, 100, payload.size - 3):
        with pytest.raises(ValueError):
            codec.decode(payload[:cut], np.uint16, (64, 64))


def test_bslz4_edge_values_and_header():
    codec = Bslz4Codec()
    for dtype in (np.uint8, np.uint16, np.uint32):
        top = np.iinfo(dtype).max
        image = np.array([[0, 1, top, top - 1] * 5] * 7, dtype=dtype)  # 140 pixels: not a multiple of a block
        payload = codec.encode(image)
        assert int.from_bytes(payload[:8].tobytes(), "big") == image.nbytes
        assert int.from_bytes(payload[8:12].tobytes(), "big") == 8192
        np.testing.assert_array_equal(codec.decode(payload, dtype, image.shape), image)
