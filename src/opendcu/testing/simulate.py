"""Images with known truth for tests and benchmarks: a scene rendered the way the DCU would publish it.

`detector_image` runs the real chain: the scene's expected photons -> simulated module physics (Poisson, physical
pixels) -> the pipeline's ImageProcessor (virtual pixels, gaps, mask, bit depth). `poisson_image` is the quick
version (Poisson on the expected image, gaps set to the error value) for unit tests that need many frames.
"""

from __future__ import annotations

import numpy as np

from opendcu.app_detector.pipeline.arrays import PipelineArrays
from opendcu.app_detector.pipeline.processor import ImageProcessor
from opendcu.app_detector.series import SeriesSettings
from opendcu.geometry import DetectorLayout, DetectorModel
from opendcu.simulator.physics import render_module_frame
from opendcu.simulator.scenes.base import Scene


def detector_image(
    scene: Scene, model: DetectorModel, frame_number: int, seed: int = 0, bit_depth: int = 32
) -> np.ndarray:
    """The image a series with this scene publishes for `frame_number` (gaps at 2^bit_depth - 1)."""
    layout = DetectorLayout(model)
    raw = np.stack([render_module_frame(scene, layout, m, frame_number, seed) for m in range(model.n_modules)])
    settings = SeriesSettings(
        series_id=seed,
        detector=model.name,
        nimages_total=frame_number,
        bit_depth_image=bit_depth,
        compression="bslz4",
        pixel_mask_applied=True,
        mask_to_zero=False,
    )
    processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, layout.default_pixel_mask(), None))
    return processor.process(raw[None]).copy()  # one sub-frame


def poisson_image(
    scene: Scene, model: DetectorModel, frame_number: int, rng: np.random.Generator, bit_depth: int = 32
) -> np.ndarray:
    """Poisson noise on the scene's expected image (virtual pixels); gaps at the error value."""
    h, w = model.shape
    expected = scene.expected(frame_number, slice(0, h), slice(0, w))
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bit_depth]
    top = (1 << bit_depth) - 1
    image = np.minimum(rng.poisson(expected), top - 1).astype(dtype)
    image[DetectorLayout(model).gap_mask] = top
    return image
