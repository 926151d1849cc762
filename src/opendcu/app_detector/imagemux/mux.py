"""The ImageMux: hands every compressed image, in order, to the enabled customer interfaces.

Images are shared, not copied: each interface gets a reference to the same output slot, and the slot returns
to the pipeline's free list once every interface has released it. Each interface brings its own buffer and
policy (the FileWriter blocks rather than drop; a stream may drop and count).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from opendcu.app_detector.series import Series

log = logging.getLogger(__name__)


@dataclass(eq=False)
class CompressedImage:
    """One image as every interface sees it: the chunk bytes plus what describes them."""

    series_id: int
    image_id: int  # 0-based within the series, as streams number images
    data: np.ndarray  # uint8 view of the shared output slot: the exact chunk payload
    dtype: np.dtype
    shape: tuple[int, int]
    compression: str
    packets_expected: int
    packets_received: int
    _on_free: Callable[[], None] = field(repr=False, default=lambda: None)
    _refs: int = field(default=1, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def image_number(self) -> int:
        """1-based image number, as files number images."""
        return self.image_id + 1

    @property
    def efficiency(self) -> float:
        return self.packets_received / self.packets_expected if self.packets_expected else 1.0

    def retain(self, n: int = 1) -> None:
        with self._lock:
            self._refs += n

    def release(self) -> None:
        """Give back one reference; the last one frees the output slot."""
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            self._on_free()


class ImageInterface(Protocol):
    """A customer interface attached to the ImageMux (FileWriter, Stream, Monitor, analysis)."""

    name: str

    @property
    def enabled(self) -> bool: ...

    def start_series(self, series: Series) -> None:
        """Called at arm, before any image of the series."""

    def offer(self, image: CompressedImage) -> None:
        """Take one image; must call image.release() when done with it (now or later)."""

    def end_series(self, series: Series, aborted: bool) -> None:
        """Called after the last image of the series; returns when the interface has finished it."""


class ImageMux:
    """Fans images out to interfaces."""

    def __init__(self) -> None:
        self.interfaces: list[ImageInterface] = []
        self._active: list[ImageInterface] = []

    def attach(self, interface: ImageInterface) -> None:
        self.interfaces.append(interface)

    def start_series(self, series: Series) -> None:
        # an interface's mode is sampled at arm, as on a real DCU
        self._active = [i for i in self.interfaces if i.enabled]
        for i in self._active:
            i.start_series(series)

    def publish(self, image: CompressedImage) -> None:
        image.retain(len(self._active))
        for i in self._active:
            try:
                i.offer(image)
            except Exception:
                log.exception("interface %s failed on image %d", i.name, image.image_id)
                image.release()
        image.release()  # the mux's own reference

    def end_series(self, series: Series, aborted: bool = False) -> None:
        for i in self._active:
            i.end_series(series, aborted)
