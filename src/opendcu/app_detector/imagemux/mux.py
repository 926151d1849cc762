"""The ImageMux: hands every compressed image, in order, to the enabled customer interfaces.

Images are shared, not copied: each interface gets a reference to the same output slot, and the slot returns
to the pipeline's free list once every interface has released it. Each interface brings its own bounded buffer
and policy (`buffer.py`): the FileWriter blocks rather than drop (backpressure), the Stream drops and counts,
the Monitor keeps `buffer_size` images and discards new or old ones.

Hooks for other components (e.g. edge analysis, issue 7):
- `CompressedImage.annotations`: extra per-image keys; stream v2 appends them to the image message after the
  standard keys (DECTRIS clients ignore unknown keys), stream v1 ignores them; `Series.end_annotations`, filled
  by an interface ending the series before the Stream, the same for the v2 end message;
- `FileWriter.add_master_contributor(fn)`: per-image datasets written into the NXmx master at series end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from opendcu.app_detector.imagemux.buffer import Closed, ImageBuffer, Policy
from opendcu.app_detector.os_threads import start_named
from opendcu.app_detector.series import Series

log = logging.getLogger(__name__)

#: items an interface's thread takes from its buffer at once (one lock hold, not one per image)
TAKE_AT_ONCE = 64


@dataclass(eq=False, slots=True)
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
    #: extra keys for the stream v2 image message (after the standard keys); ignored by stream v1 and files
    annotations: dict[str, Any] = field(default_factory=dict)
    #: where `data` lives in shared memory (segment name, byte offset), so other processes can read it in place
    shm_name: str = ""
    shm_offset: int = 0
    _on_free: Callable[[], None] = field(repr=False, default=lambda: None)
    #: one token per reference, the creator's (0) at the bottom: list.append and list.pop are atomic, so the
    #: reference count needs no lock per image and interface; whoever pops the 0 held the last reference
    _refs: list[int] = field(default_factory=lambda: [0], repr=False)

    @property
    def image_number(self) -> int:
        """1-based image number, as files number images."""
        return self.image_id + 1

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def efficiency(self) -> float:
        return self.packets_received / self.packets_expected if self.packets_expected else 1.0

    def retain(self, n: int = 1) -> None:
        """Take `n` more references (only while the caller holds one, so the count never passed zero)."""
        self._refs.extend([1] * n)

    def release(self) -> None:
        """Give back one reference; the last one frees the output slot (a release too many raises IndexError)."""
        if self._refs.pop() == 0:
            self._on_free()

    def decode(self) -> np.ndarray:
        """The pixels (decompressed); for readers that need them (Monitor), never on the write path."""
        from opendcu.codecs import get_codec

        return get_codec(self.compression).decode(self.data, self.dtype, self.shape)


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
        self._active = []
        try:
            for i in [i for i in self.interfaces if i.enabled]:
                i.start_series(series)
                self._active.append(i)
        except Exception:  # e.g. the master file cannot be written: the arm fails, started interfaces end
            started, self._active = self._active, []
            for i in started:
                i.end_series(series, True)
            raise

    def publish(self, image: CompressedImage) -> None:
        self.publish_many([image])

    def publish_many(self, images: list[CompressedImage]) -> None:
        """Hand a batch of consecutive images to every interface: one hand-off per interface and batch."""
        for image in images:
            image.retain(len(self._active))
        for i in self._active:
            offer_many = getattr(i, "offer_many", None)
            if offer_many is not None:
                try:
                    offer_many(images)
                except Exception:
                    first, last = images[0].image_id, images[-1].image_id
                    log.exception("interface %s failed on images %d..%d", i.name, first, last)
                continue
            for image in images:
                try:
                    i.offer(image)
                except Exception:
                    log.exception("interface %s failed on image %d", i.name, image.image_id)
                    image.release()
        for image in images:
            image.release()  # the mux's own reference

    def end_series(self, series: Series, aborted: bool = False) -> None:
        """Every interface ends the series; then those with an `after_series` hook run it (the FileWriter
        completes its master there, with what other interfaces, e.g. analysis, produced for the series)."""
        for i in self._active:
            i.end_series(series, aborted)
        for i in self._active:
            after = getattr(i, "after_series", None)
            if after is not None:
                try:
                    after(series, aborted)
                except Exception:
                    log.exception("interface %s failed after series %d", i.name, series.series_id)


class BufferedInterface:
    """Base of an interface that works in its own thread behind an `ImageBuffer`.

    `offer` only enqueues (under the buffer's policy); the thread calls `handle_start`, `handle_image` and
    `handle_end` in order. Dropped images are released at once, handled ones after `handle_image`.
    """

    name = "interface"

    def __init__(self, capacity: int, policy: Policy):
        self.buffer = ImageBuffer(capacity, policy, on_drop=lambda image: image.release())
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        start_named(self._thread)

    # -- ImageInterface ------------------------------------------------------------------------------------------
    def start_series(self, series: Series) -> None:
        self.buffer.put_control(("start", series, None))

    def offer(self, image: CompressedImage) -> None:
        self.offer_many([image])

    def offer_many(self, images: list[CompressedImage]) -> None:
        try:
            self.buffer.put_images(images)
        except Closed as closed:
            for image in closed.rest:
                image.release()

    def end_series(self, series: Series, aborted: bool) -> None:
        done = threading.Event()
        self.buffer.put_control(("end", (series, aborted), done))
        done.wait()

    # -- to implement ---------------------------------------------------------------------------------------------
    def handle_start(self, series: Series) -> None: ...

    def handle_image(self, image: CompressedImage) -> None: ...

    def handle_end(self, series: Series, aborted: bool) -> None: ...

    def after_images(self) -> None:
        """Called after each run of images taken from the buffer at once (e.g. to flush what they made)."""

    # -- thread ----------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                items = self.buffer.get_many(TAKE_AT_ONCE)
            except Closed:
                return
            handled = False  # images handled since the last after_images()
            for is_image, item in items:
                if is_image:
                    self._handle_one(item)
                    handled = True
                    continue
                if handled:
                    self.after_images()
                    handled = False
                self._handle_control(item)
            if handled:
                self.after_images()

    def _handle_one(self, image: CompressedImage) -> None:
        try:
            self.handle_image(image)
        except Exception:
            log.exception("%s failed on image %d", self.name, image.image_id)
        finally:
            image.release()

    def _handle_control(self, item: tuple[str, Any, threading.Event | None]) -> None:
        kind, argument, done = item
        try:
            if kind == "start":
                self.handle_start(argument)
            elif kind == "end":
                self.handle_end(*argument)
        except Exception:
            log.exception("%s failed at series %s", self.name, kind)
        finally:
            if done is not None:
                done.set()

    def close_buffer(self, timeout: float = 30) -> None:
        """Let the thread finish what is queued, then stop it."""
        done = threading.Event()
        self.buffer.put_control(("stop", None, done))
        done.wait(timeout)
        for image in self.buffer.close():
            image.release()
        self._thread.join(timeout=5)
