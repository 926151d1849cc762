"""The compiled batch path of a pipeline worker (`ImageProcessor.process_batch`, `codecs.compiled`) gives exactly
the chunks of the frame-by-frame path (`process` + the codec's `encode`), for every kernel specialisation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from opendcu.app_detector.daq.assembler import NO_SLOT
from opendcu.app_detector.pipeline.arrays import PipelineArrays, image_shape
from opendcu.app_detector.pipeline.processor import ImageProcessor
from opendcu.app_detector.pipeline.worker import SeriesWorker, process_run
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs import get_codec
from opendcu.codecs.compiled import CHUNK_BSLZ4, CHUNK_NONE, chunk_bound, encode_chunk
from opendcu.geometry import get_model

VARIANTS = [
    ("eiger2-500k", {}),
    ("eiger2-500k", {"bit_depth_image": 32, "nframes_sum": 2, "countrate_correction_applied": True}),
    ("eiger2-500k", {"bit_depth_image": 32, "binning_2x2_applied": True, "compression": "none"}),
    ("eiger2-500k", {"bit_depth_image": 8, "float8_encoding_applied": True, "pixel_mask_applied": True}),
    ("fastasic-bin2-8bit", {"bit_depth_image": 8, "float8_encoding_applied": True}),
    ("fastasic", {"bit_depth_image": 8, "binning_2x2_applied": True, "float8_encoding_applied": True}),
]


@pytest.mark.parametrize(("detector", "changes"), VARIANTS)
def test_a_batch_in_one_compiled_call_gives_the_chunks_of_the_frame_by_frame_path(detector, changes):
    model = get_model(detector)
    base = SeriesSettings(0, detector, 1, 16, "bslz4", True, False, flatfield_correction_applied=True)
    settings = replace(base, frame_count_time=0.001, **changes)
    settings = replace(settings, image_shape=image_shape(settings))
    rng = np.random.default_rng(5)
    flatfield = rng.normal(1, 0.05, model.shape).astype(np.float32)
    mask = np.zeros(model.shape, np.uint32)
    mask[rng.random(model.shape) < 0.002] = 8
    processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, mask, flatfield))
    codec = get_codec(settings.compression)
    nsub, n = settings.nframes_sum, 5
    raw_shape = (nsub, model.n_modules, *model.module.raw_shape)
    raw_bytes = int(np.prod(raw_shape)) * 2
    raw_ring = np.zeros((n, raw_bytes + 4096), np.uint8)
    for i in range(n):
        raw = raw_ring[i, :raw_bytes].view(np.uint16)
        raw[:] = rng.poisson(2 + 40 * i, raw.size)
        raw[1000 * (i + 1) : 1000 * (i + 1) + 300] = 0xFFFF  # a lost packet's pixels
    out_ring = np.zeros((n, processor.chunk_bound()), np.uint8)
    slots, out_slots = np.array([3, 0, 4, 1, 2]), np.array([1, 2, 3, 4, 0])

    sizes = processor.process_batch(raw_ring, slots, nsub, out_ring, out_slots)

    for slot, out_slot, size in zip(slots, out_slots, sizes, strict=True):
        image = processor.process(raw_ring[slot, :raw_bytes].view(np.uint16).reshape(raw_shape))
        expected = codec.encode(image).tobytes()
        assert size == len(expected)
        assert out_ring[out_slot, :size].tobytes() == expected


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_the_compiled_bslz4_encoder_makes_the_bytes_of_the_bslz4_codec_and_decodes_back(dtype):
    image = np.random.default_rng(1).poisson(3, (333, 517)).astype(dtype)
    out = np.zeros(chunk_bound(CHUNK_BSLZ4, image.size, image.itemsize), np.uint8)
    from opendcu.codecs.bslz4 import block_elems

    n = encode_chunk(image, CHUNK_BSLZ4, block_elems(image.itemsize), out)
    codec = get_codec("bslz4")
    assert out[:n].tobytes() == codec.encode(image).tobytes()
    np.testing.assert_array_equal(codec.decode(out[:n], image.dtype, image.shape), image)
    raw = np.zeros(image.nbytes, np.uint8)
    assert encode_chunk(image, CHUNK_NONE, 0, raw) == image.nbytes
    assert raw.tobytes() == image.tobytes()
    assert encode_chunk(image, CHUNK_NONE, 0, raw[:-1]) == -1  # a chunk that does not fit is refused


@pytest.mark.parametrize(("detector", "changes"), [VARIANTS[0], VARIANTS[4], VARIANTS[5]])
def test_frames_without_pixels_get_the_all_invalid_image_in_a_batch_with_frames_that_have_theirs(detector, changes):
    """A frame handed on with NO_SLOT (nothing arrived, or no raw slot was free) reads no raw slot: its image is
    every pixel invalid (masked pixels as masked, gaps as always), and the batch's other frames are processed."""
    model = get_model(detector)
    base = SeriesSettings(0, detector, 1, 16, "bslz4", True, True, flatfield_correction_applied=True)
    settings = replace(base, frame_count_time=0.001, **changes)
    settings = replace(settings, image_shape=image_shape(settings))
    rng = np.random.default_rng(8)
    mask = np.zeros(model.shape, np.uint32)
    mask[rng.random(model.shape) < 0.01] = 8
    processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, mask, None))
    worker = SeriesWorker.__new__(SeriesWorker)  # a worker's series state without a calibration shared block
    worker.settings, worker.processor, worker.codec = settings, processor, get_codec(settings.compression)
    worker.batched, worker._invalid = True, {}
    raw_shape = (1, model.n_modules, *model.module.raw_shape)
    raw_ring = SlotRing(3, int(np.prod(raw_shape)) * 2)
    out_ring = SlotRing(5, processor.chunk_bound())
    raws = [rng.poisson(5, raw_shape).astype(np.uint16) for _ in range(3)]
    for slot, raw in enumerate(raws):
        raw_ring.array(slot, np.uint16, raw_shape)[:] = raw
    slots = [2, NO_SLOT, 0, NO_SLOT, 1]
    tasks = np.array([(0, i + 1, slot, 1, 1, 1, i) for i, slot in enumerate(slots)], dtype=np.int64)
    try:
        sizes = process_run(worker, tasks, model, raw_ring, out_ring)
        codec, dtype, shape = worker.codec, processor.image.dtype, processor.image.shape
        images = [codec.decode(out_ring.bytes(i, int(n)), dtype, shape) for i, n in enumerate(sizes)]
    finally:
        raw_ring.close()
        out_ring.close()
    for image, slot in zip(images, slots, strict=True):
        if slot != NO_SLOT:
            np.testing.assert_array_equal(image, processor.process(raws[slot]))
    # the oracle of an image without pixels: masked pixels (and blocks with one) 0, every other pixel invalid
    masked = mask != 0
    if settings.binning_2x2_applied:
        masked = masked.reshape(shape[0], 2, shape[1], 2).any(axis=(1, 3))
    expected = np.where(masked, 0, processor.error_value).astype(dtype)
    np.testing.assert_array_equal(images[1], expected)
    np.testing.assert_array_equal(images[3], expected)
