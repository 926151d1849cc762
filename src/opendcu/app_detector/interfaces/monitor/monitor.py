"""The Monitor interface: a small buffer of recent images that users fetch as TIFF (spec/monitor-tiff.md §1).

The Monitor keeps its own copy of each accepted image's *compressed* chunk (a few hundred kB), so that it never
holds a pipeline slot while nobody fetches; pixels are decoded and turned into a TIFF only when fetched.
`buffer_size` bounds the buffer; when it is full, `discard_new` drops the new image (true, the 1.8 default) or
evicts the oldest (false). Either way the image is counted in `dropped` and the state becomes `overflow`.
`images/monitor` shows the newest image, whether the buffer kept it or not (while the buffer is full and
discards new images, refreshed at most every 50 ms, so that an unread monitor costs no copy per image).

Image ids are the series' 0-based image ids, as in the streams.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from opendcu.app_detector.control.errors import ParameterNotFound, Timeout
from opendcu.app_detector.imagemux.mux import CompressedImage
from opendcu.app_detector.interfaces.monitor.params import build_monitor_subsystem
from opendcu.app_detector.interfaces.monitor.tiff import MonitorMetadata, encode_tiff
from opendcu.app_detector.series import Series
from opendcu.codecs import get_codec

THRESHOLD_ID = 1  # the only channel, "threshold_1"
#: images/monitor shows a live view: with a full buffer the newest image is kept at most every 50 ms
LATEST_PERIOD_NS = 50_000_000


@dataclass(frozen=True)
class MonitorImage:
    series: Series
    image_id: int
    chunk: bytes
    dtype: np.dtype
    shape: tuple[int, int]
    compression: str
    received_ns: int  # wall clock when the monitor took it

    def tiff(self) -> bytes:
        pixels = get_codec(self.compression).decode(self.chunk, self.dtype, self.shape)
        return encode_tiff(pixels, self._metadata(pixels))

    def _metadata(self, pixels: np.ndarray) -> MonitorMetadata:
        s = self.series
        cfg = s.detector_config
        error_value = s.settings.error_value
        mask = s.pixel_mask
        lost = pixels == error_value
        if mask is not None:
            lost &= mask == 0  # error-valued pixels that are not masked came from lost packets
        seconds, ns = divmod(self.received_ns, 1_000_000_000)
        stamp = datetime.fromtimestamp(seconds, UTC).astimezone()
        date = (
            stamp.strftime("%Y-%m-%dT%H:%M:%S")
            + f".{ns:09d}"
            + stamp.strftime("%z")[:3]
            + ":"
            + stamp.strftime("%z")[3:]
        )
        energy = float(cfg.get("photon_energy", 0.0))
        return MonitorMetadata(
            series_unique_id=s.unique_id,
            series_number=s.series_id,
            image_number=self.image_id,
            image_date_time=date,
            threshold_id=THRESHOLD_ID,
            threshold_energy=float(cfg.get("threshold_energy", 0.0)),
            exposure_time=float(s.count_time),
            incident_energy=energy,
            incident_wavelength=float(cfg.get("wavelength", 0.0)),
            lost_pixel_count=int(np.count_nonzero(lost)),
            beam_center=(float(cfg.get("beam_center_x", 0.0)), float(cfg.get("beam_center_y", 0.0))),
            detector_distance=float(cfg.get("detector_distance", 0.0)),
        )


class Monitor:
    """Buffers recent images for `images/next`, `images/monitor` and `images/<series>/<id>`."""

    name = "monitor"

    def __init__(self) -> None:
        self.subsystem = build_monitor_subsystem(self)
        self.errors: list[str] = []
        self.dropped = 0
        self.overflow = False
        self.next_image_number = [0, 0]
        self.monitor_image_number = [0, 0]
        self._images: deque[MonitorImage] = deque()
        self._latest: MonitorImage | None = None
        self._series: Series | None = None
        self._cond = threading.Condition()

    # -- ImageInterface ------------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.subsystem["mode"] == "enabled"

    def start_series(self, series: Series) -> None:
        self._series = series

    def offer(self, image: CompressedImage) -> None:
        try:
            with self._cond:
                if self._series is None or self._series.series_id != image.series_id:
                    return
                now = time.time_ns()
                full = len(self._images) >= self.subsystem["buffer_size"]
                if full:
                    self.dropped += 1
                    self.overflow = True
                if full and self.subsystem["discard_new"]:
                    # not buffered; still the newest for images/monitor, refreshed at most LATEST_PERIOD_NS
                    # apart so that a full buffer costs no copy per image at high frame rates
                    if self._latest is None or now - self._latest.received_ns >= LATEST_PERIOD_NS:
                        self._latest = self._keep(image, now)
                        self._cond.notify_all()
                    return
                if full:
                    self._images.popleft()
                kept = self._keep(image, now)
                self._images.append(kept)
                self._latest = kept
                self._cond.notify_all()
        finally:
            image.release()

    def _keep(self, image: CompressedImage, now_ns: int) -> MonitorImage:
        return MonitorImage(
            self._series,
            image.image_id,
            bytes(image.data),
            np.dtype(image.dtype),
            tuple(image.shape),
            image.compression,
            now_ns,
        )

    def end_series(self, series: Series, aborted: bool) -> None:
        pass

    # -- images -------------------------------------------------------------------------------------------------
    def next_image(self, timeout_s: float) -> MonitorImage:
        """The oldest buffered image, removed from the buffer; raises Timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._images, timeout_s):
                raise Timeout(f"no monitor image within {timeout_s * 1000:.0f} ms")
            image = self._images.popleft()
            self.next_image_number = [image.series.series_id, image.image_id]
            return image

    def latest_image(self, timeout_s: float) -> MonitorImage:
        """The newest image (kept in the buffer; still there after `clear`); raises Timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None, timeout_s):
                raise Timeout(f"no monitor image within {timeout_s * 1000:.0f} ms")
            image = self._latest
            self.monitor_image_number = [image.series.series_id, image.image_id]
            return image

    def image(self, series_id: int, image_id: int, threshold: int = THRESHOLD_ID) -> MonitorImage:
        """A buffered image by id; raises ParameterNotFound (404)."""
        with self._cond:
            if threshold == THRESHOLD_ID:
                for image in self._images:
                    if image.series.series_id == series_id and image.image_id == image_id:
                        return image
        raise ParameterNotFound(f"monitor image {series_id}/{image_id}/{threshold}")

    def list_images(self) -> list[tuple[int, list[int]]]:
        """[(series, [image ids])] of the buffered images, in buffer order."""
        out: dict[int, list[int]] = {}
        with self._cond:
            for image in self._images:
                out.setdefault(image.series.series_id, []).append(image.image_id)
        return list(out.items())

    # -- status and commands -------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return "overflow" if self.overflow else "normal"

    def fill_level(self) -> list[int]:
        return [len(self._images), self.subsystem["buffer_size"]]

    def buffer_free(self) -> int:
        """Bytes the buffer can still take, at the uncompressed size of the images it holds."""
        with self._cond:
            if not self._images:
                return 0 if self._latest is None else self.subsystem["buffer_size"] * self._image_bytes(self._latest)
            free_slots = max(0, self.subsystem["buffer_size"] - len(self._images))
            return free_slots * self._image_bytes(self._images[-1])

    @staticmethod
    def _image_bytes(image: MonitorImage) -> int:
        return image.shape[0] * image.shape[1] * image.dtype.itemsize

    def clear(self) -> None:
        """Empty the buffer, reset `dropped` and `state`; the newest image stays available as `images/monitor`."""
        with self._cond:
            self._images.clear()
            self.dropped = 0
            self.overflow = False

    def initialize(self) -> None:
        with self._cond:
            self.subsystem.reset()
            self._images.clear()
            self._latest = None
            self.dropped = 0
            self.overflow = False
            self.errors.clear()
            self.next_image_number = [0, 0]
            self.monitor_image_number = [0, 0]

    def close(self) -> None:
        with self._cond:
            self._images.clear()
            self._latest = None
