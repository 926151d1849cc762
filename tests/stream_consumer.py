"""A stream V2 PULL consumer for tests: it keeps up, and records what arrived."""

from __future__ import annotations

import threading
import time

import zmq

from opendcu.app_detector.interfaces.stream.decoder import decode_v2


class StreamConsumer:
    """Reads every message of a stream V2 endpoint on its own thread: the message types in order, the image ids,
    and (with `keep=True`) each message's raw bytes. Arrays stay compressed: it counts as fast as it can."""

    def __init__(self, endpoint: str, keep: bool = False):
        self.sock = zmq.Context.instance().socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.keep = keep
        self.kinds: list[str] = []
        self.images: list[int] = []
        self.raw: list[bytes] = []  # with keep: every message as it came
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                raw = self.sock.recv()
            except zmq.Again:
                continue
            message = decode_v2(raw, decompress_arrays=False)
            if self.keep:
                self.raw.append(raw)
            self.kinds.append(message["type"])
            if message["type"] == "image":
                self.images.append(message["image_id"])

    def wait_end(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while "end" not in self.kinds and time.monotonic() < deadline:
            time.sleep(0.05)
        return "end" in self.kinds

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close(linger=0)
