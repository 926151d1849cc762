"""The array codecs: the 8-bit float counter E3M5 and 2x2 binning, against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from pipeline_reference import e3m5

from opendcu.codecs import Bin2x2, Bslz4Codec, CodecChain, Float8E3M5


def test_e3m5_encode_matches_the_definition_for_every_count():
    counts = np.arange(0, 6000, dtype=np.uint32)
    codes = Float8E3M5().encode(counts)
    assert codes.dtype == np.uint8
    assert codes.tolist() == [e3m5(int(n)) for n in counts]


def test_the_pipeline_kernel_encodes_e3m5_like_the_codec():
    from opendcu.app_detector.pipeline.kernels import e3m5_code

    assert [int(e3m5_code(n)) for n in range(6000)] == [e3m5(n) for n in range(6000)]


def test_e3m5_layout_and_figures():
    codec = Float8E3M5()
    decoded = codec.decode(np.arange(256, dtype=np.uint8))
    assert decoded[:64].tolist() == list(range(64))  # every count up to 63 is exact
    assert decoded[255] == 4032 == 63 * 64  # top code: (32 + 31) * 2^6
    steps = np.diff(decoded.astype(np.int64))
    assert set(steps[64:].tolist()) == {2, 4, 8, 16, 32, 64}  # the step doubles each octave
    # truncation: a code stands for the counts from its value up to the next code's value
    for n in (64, 65, 100, 2047, 2048, 2111, 3968, 4031):
        code = codec.encode(np.array([n], np.uint32))[0]
        assert decoded[code] <= n < (decoded[code + 1] if code < 255 else 2**32)


def test_e3m5_saturation_and_invalid_values():
    codec = Float8E3M5()
    assert codec.encode(np.array([4031, 4032, 4033, 10**6], np.uint32)).tolist() == [254, 255, 255, 255]
    # the input's top value (masked / error) becomes the top code, for every input depth
    for dtype in (np.uint16, np.uint32):
        top = np.iinfo(dtype).max
        assert codec.encode(np.array([0, 1, top], dtype)).tolist() == [0, 1, 255]


def test_e3m5_unbiased_decode_has_no_bias_on_poisson_counts():
    rng = np.random.default_rng(3)
    codec = Float8E3M5()
    for mean in (5.0, 100.0, 1500.0):
        counts = rng.poisson(mean, 400_000).astype(np.uint32)
        codes = codec.encode(counts)
        unbiased = codec.decode_unbiased(codes).astype(np.float64)
        lower = codec.decode(codes).astype(np.float64)
        sigma = np.sqrt(mean)
        assert abs(unbiased.mean() - counts.mean()) < 0.01 * sigma  # unbiased
        if mean > 64:
            assert counts.mean() - lower.mean() > 0.04 * sigma  # the plain decode is biased low
        assert np.sqrt(np.mean((unbiased - counts) ** 2)) < 0.5 * sigma  # error below the photon noise
    exact = np.arange(64, dtype=np.uint8)
    np.testing.assert_array_equal(codec.decode_unbiased(exact), exact.astype(np.float32))


def reference_bin(image: np.ndarray) -> np.ndarray:
    top = np.iinfo(image.dtype).max
    h, w = image.shape
    out = np.zeros((h // 2, w // 2), np.uint32)
    for i in range(h // 2):
        for j in range(w // 2):
            block = [int(v) for v in image[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()]
            out[i, j] = 2**32 - 1 if top in block else min(sum(block), 2**32 - 1)
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_bin2x2_matches_the_reference(dtype):
    rng = np.random.default_rng(4)
    top = np.iinfo(dtype).max
    image = rng.integers(0, top, (40, 60), dtype=dtype, endpoint=True)
    image[:10] = rng.poisson(1, (10, 60)).astype(dtype)
    image[20, 31] = top  # poisons exactly one block
    if dtype == np.uint32:
        image[30:32, 40:42] = top - 1  # four huge values: the sum saturates
    np.testing.assert_array_equal(Bin2x2().encode(image), reference_bin(image))


def test_bin2x2_rejects_odd_sizes_and_chains_with_compression():
    with pytest.raises(ValueError, match="even"):
        Bin2x2().encode(np.zeros((3, 4), np.uint16))
    chain = CodecChain((Bin2x2(), Float8E3M5()), Bslz4Codec())
    image = np.random.default_rng(5).poisson(20, (512, 1028)).astype(np.uint16)
    assert chain.encoded_shape_dtype(image.shape, image.dtype) == ((256, 514), np.dtype(np.uint8))
    codes = chain.decode(chain.encode(image), image.shape, image.dtype)
    np.testing.assert_array_equal(codes, Float8E3M5().encode(Bin2x2().encode(image)))
