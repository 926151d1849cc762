"""Series and compressed images for interface tests, built the way the data path builds them: images are
bslz4 chunks in a shared-memory SlotRing, handed out as CompressedImage views with a free callback."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import numpy as np

from opendcu.app_detector.imagemux import CompressedImage
from opendcu.app_detector.series import Series, SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs import get_codec
from opendcu.geometry import DetectorLayout, get_model


def make_series(
    series_id: int = 1,
    nimages: int = 6,
    detector: str = "eiger2-500k",
    bit_depth: int = 16,
    ntrigger: int = 1,
    **config,
) -> Series:
    model = get_model(detector)
    h, w = model.shape
    layout = DetectorLayout(model)
    settings = SeriesSettings(series_id, detector, nimages * ntrigger, bit_depth, "bslz4", True, False)
    cfg = {
        "wavelength": 1.5406,
        "photon_energy": 8047.78,
        "threshold_energy": 4023.89,
        "beam_center_x": w / 2,
        "beam_center_y": h / 2,
        "detector_distance": 0.12,
        "bit_depth_readout": 16,
        "detector_readout_time": 1e-7,
        "description": model.description,
        "detector_number": model.detector_number,
        "software_version": "0.1.0",
        "sensor_material": "Si",
        "sensor_thickness": 0.00045,
        "x_pixel_size": 75e-6,
        "y_pixel_size": 75e-6,
        "x_pixels_in_detector": w,
        "y_pixels_in_detector": h,
        "omega_start": 10.0,
        "omega_increment": 0.5,
        "countrate_correction_count_cutoff": 65534,
        "data_collection_date": "2026-01-02T03:04:05.678+00:00",
        "nimages": nimages,
        "ntrigger": ntrigger,
        "trigger_mode": "ints",
        "count_time": 0.009,
        "frame_time": 0.01,
        "bit_depth_image": bit_depth,
        "compression": "bslz4",
        "pixel_mask_applied": True,
    }
    cfg.update(config)
    return Series(
        settings,
        nimages,
        ntrigger,
        "ints",
        0.009,
        0.01,
        cfg,
        layout.default_pixel_mask(),
        unique_id="01J0000000000000000000000" + str(series_id % 10),
    )


def make_pixels(series: Series, image_id: int) -> np.ndarray:
    """Deterministic, compressible pixels with the series' mask applied."""
    h, w = series.detector_config["y_pixels_in_detector"], series.detector_config["x_pixels_in_detector"]
    rng = np.random.default_rng(1000 * series.series_id + image_id)
    pixels = rng.poisson(2.0, size=(h, w)).astype(series.settings.dtype)
    pixels[series.pixel_mask != 0] = series.settings.error_value
    return pixels


@dataclass
class ImageSource:
    """Compressed images in a SlotRing; counts slots given back (every reference released)."""

    series: Series
    n_slots: int = 16
    ring: SlotRing = field(init=False)
    free: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        h, w = self.series.detector_config["y_pixels_in_detector"], self.series.detector_config["x_pixels_in_detector"]
        self.ring = SlotRing(self.n_slots, h * w * 4 + 65536)
        for i in range(self.n_slots):
            self.free.put(i)

    def image(self, image_id: int, pixels: np.ndarray | None = None, timeout: float = 30) -> CompressedImage:
        pixels = make_pixels(self.series, image_id) if pixels is None else pixels
        chunk = get_codec("bslz4").encode(pixels)
        slot = self.free.get(timeout=timeout)
        view = self.ring.bytes(slot, chunk.nbytes)
        view[:] = chunk
        return CompressedImage(
            series_id=self.series.series_id,
            image_id=image_id,
            data=view,
            dtype=pixels.dtype,
            shape=pixels.shape,
            compression="bslz4",
            packets_expected=10,
            packets_received=10,
            shm_name=self.ring.name,
            shm_offset=slot * self.ring.stride,
            _on_free=lambda: self.free.put(slot),
        )

    def all_free(self) -> bool:
        return self.free.qsize() == self.n_slots

    def close(self) -> None:
        self.ring.close()
