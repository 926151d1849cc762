"""The Stream interface: ZeroMQ PUSH sockets for Stream V1 (legacy, port 9999) and V2 (CBOR, port 31001).

Both sockets are bound when app-detector starts; `stream/config/format` chooses, at arm, which one carries the
series. The start/header message goes out at arm and the end message at series end, and neither is ever
dropped while a consumer is connected: they wait for room in its queue (a slow consumer gets every image it had
room for, then the end). With no consumer connected they wait `control_timeout_ms` (a consumer that connects
just after arm still gets them). Images are sent without blocking: an image that no consumer pulls, because
none is connected or its queue is full, is dropped and counted in `dropped` (reset at arm), as DECTRIS does.
The send queue (`sndhwm` messages, sized from the image size) is deep enough that a consumer who keeps up on
average never loses an image; only one that falls behind does. The Stream never slows the pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import zmq

from opendcu.app_detector.imagemux.buffer import Policy
from opendcu.app_detector.imagemux.mux import BufferedInterface, CompressedImage
from opendcu.app_detector.interfaces.status import ModeAndState
from opendcu.app_detector.interfaces.stream import v1, v2
from opendcu.app_detector.interfaces.stream.params import build_stream_subsystem
from opendcu.app_detector.series import Series

log = logging.getLogger(__name__)

#: how long the start and end messages wait when no consumer is connected (ms)
CONTROL_SEND_TIMEOUT_MS = 2000
#: how long they wait at most for room in a connected consumer's queue (s): a consumer that reads nothing for
#: this long is given up on
CONTROL_MAX_WAIT = 600.0
#: bytes of images the send queue may hold (sets its depth in messages from the image size)
SEND_QUEUE_BYTES = 256 << 20
MIN_SNDHWM, MAX_SNDHWM = 64, 50_000


def send_queue_depth(image_bytes: int) -> int:
    """Messages the send queue holds for images of about `image_bytes` bytes."""
    return max(MIN_SNDHWM, min(MAX_SNDHWM, SEND_QUEUE_BYTES // max(1, image_bytes)))


class Stream(ModeAndState, BufferedInterface):
    """Stream V1 + V2 publisher fed by the ImageMux."""

    name = "stream"

    def __init__(
        self,
        v1_endpoint: str,
        v2_endpoint: str,
        context: zmq.Context | None = None,
        buffer_images: int = 16,
        sndhwm: int = 64,
        control_timeout_ms: int = CONTROL_SEND_TIMEOUT_MS,
    ):
        self.subsystem = build_stream_subsystem(self)
        self.control_timeout_ms = control_timeout_ms
        self.errors: list[str] = []
        self._context = context or zmq.Context.instance()
        self._sockets = {"legacy": self._bind(v1_endpoint, sndhwm), "cbor": self._bind(v2_endpoint, sndhwm)}
        self.endpoints = {name: s.getsockopt_string(zmq.LAST_ENDPOINT) for name, s in self._sockets.items()}
        self._monitors = {
            name: s.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED) for name, s in self._sockets.items()
        }
        self._peers = dict.fromkeys(self._sockets, 0)
        self._closing = False
        self._unpulled = 0  # images the sockets refused (no consumer / consumer's queue full)
        self._series: Series | None = None
        self._image_appendix: Any = ""
        self._format = "legacy"
        self._encoders: dict[tuple, v2.ImageMessageEncoder] = {}
        self._last_encoder: tuple[Any, Any, str, v2.ImageMessageEncoder] | None = None
        self._send_lock = threading.Lock()
        super().__init__(buffer_images, Policy.DROP_NEW)

    def _bind(self, endpoint: str, sndhwm: int) -> zmq.Socket:
        sock = self._context.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, sndhwm)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        return sock

    # -- SIMPLON status (enabled, state: ModeAndState) ---------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self.buffer.dropped + self._unpulled

    def initialize(self) -> None:
        """Reset config (mode disabled), dropped count and errors."""
        self.subsystem.reset()
        self.errors.clear()
        self.buffer.reset_dropped()
        self._unpulled = 0

    # -- ImageInterface ------------------------------------------------------------------------------------------
    def start_series(self, series: Series) -> None:
        # dropped counts per series: reset at arm, before the first image can be refused
        self.buffer.reset_dropped()
        self._unpulled = 0
        self._series = series
        super().start_series(series)

    def end_series(self, series: Series, aborted: bool) -> None:
        """Returns once the stream's thread has handled every image of the series (`dropped` is final); the end
        message itself may still wait for room in a slow consumer's queue, and the series does not wait for it
        (a stalled consumer must not hold up the detector). The next series' start message follows it."""
        images_done = threading.Event()
        self.buffer.put_control(("end", (series, aborted, images_done), None))
        images_done.wait()

    def handle_start(self, series: Series) -> None:
        cfg = self.subsystem
        self._format = cfg["format"]
        self._encoders.clear()
        self._last_encoder = None
        self._image_appendix = cfg["image_appendix"]  # fixed at arm, like the rest of the series' config
        if self._format == "cbor":
            parts = [v2.start_message(series, cfg["header_detail"], cfg["header_appendix"])]
        else:
            parts = v1.header_parts(series, cfg["header_detail"], cfg["header_appendix"])
        self._send_control(parts, "start")

    def handle_image(self, image: CompressedImage) -> None:
        series = self._series
        if series is None:
            return
        if self._format == "cbor":
            parts = [self._encoder(series, image).encode(image.image_id, image.data, image.annotations)]
        else:
            parts = v1.image_parts(series, image, self._image_appendix)
        try:
            # copy=True: ZeroMQ keeps its own copy, so the shared slot can go back to the pipeline now
            self._sockets[self._format].send_multipart(parts, flags=zmq.NOBLOCK, copy=len(parts) > 1)
        except zmq.Again:
            self._unpulled += 1

    def _encoder(self, series: Series, image: CompressedImage) -> v2.ImageMessageEncoder:
        last = self._last_encoder  # the images of a series share their shape and dtype objects: no key to build
        if last is not None and last[0] is image.shape and last[1] is image.dtype and last[2] == image.compression:
            return last[3]
        key = (tuple(image.shape), np.dtype(image.dtype).str, image.compression)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = v2.ImageMessageEncoder(
                series, image.shape, image.dtype, image.compression, self._image_appendix
            )
        self._last_encoder = (image.shape, image.dtype, image.compression, encoder)
        return encoder

    def handle_end(self, series: Series, aborted: bool, images_done: threading.Event | None = None) -> None:
        full, unpulled = self.buffer.dropped, self._unpulled
        if full or unpulled:  # which side fell behind: this thread (or the CPU), or the consumers
            log.warning(
                "stream: series %d dropped %d images: %d while its buffer of %d was full, %d that no consumer pulled",
                series.series_id,
                full + unpulled,
                full,
                self.buffer.capacity,
                unpulled,
            )
        if images_done is not None:
            images_done.set()
        if self._format == "cbor":
            parts = [v2.end_message(series.series_id, series.unique_id, series.end_annotations)]
        else:
            parts = v1.end_parts(series.series_id)
        self._send_control(parts, "end")
        self._series = None

    def consumers(self, fmt: str) -> int:
        """Consumers connected to the socket of `fmt` now (from the socket's monitor events)."""
        from zmq.utils.monitor import recv_monitor_message

        monitor = self._monitors[fmt]
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            self._peers[fmt] += 1 if event == zmq.EVENT_ACCEPTED else -1 if event == zmq.EVENT_DISCONNECTED else 0
        return max(0, self._peers[fmt])

    def _send_control(self, parts: list[Any], what: str) -> None:
        """Send a start or end message: never dropped while a consumer is connected (waits for room in its
        queue, at most CONTROL_MAX_WAIT); with none connected, given up after control_timeout_ms."""
        sock = self._sockets[self._format]
        start = time.monotonic()
        while not self._closing:
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK)
                return
            except zmq.Again:
                pass
            waited = time.monotonic() - start
            if self.consumers(self._format) == 0 and waited * 1000 >= self.control_timeout_ms:
                log.warning(
                    "stream: no consumer took the %s message of the series within %d ms", what, self.control_timeout_ms
                )
                return
            if waited >= CONTROL_MAX_WAIT:
                log.warning(
                    "stream: the consumer did not make room for the %s message within %.0f s", what, CONTROL_MAX_WAIT
                )
                return
            sock.poll(50, zmq.POLLOUT)

    def close(self) -> None:
        self._closing = True
        self.close_buffer()
        for name, sock in self._sockets.items():
            sock.disable_monitor()
            self._monitors[name].close(linger=0)
            sock.close(linger=0)
