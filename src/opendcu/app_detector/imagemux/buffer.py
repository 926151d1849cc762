"""A bounded buffer between the ImageMux and one interface, with that interface's overflow policy.

- `Policy.BLOCK`: the producer waits for room (FileWriter: backpressure, never lose an image);
- `Policy.DROP_NEW`: a full buffer refuses the new image and counts it (Stream: "dropped because nobody pulled");
- `Policy.DROP_OLDEST`: a full buffer evicts its oldest image to make room, and counts that one.

Control items (series start/end markers) are never dropped and never count against the capacity: an interface
must see every start and end even while its images overflow.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class Policy(enum.Enum):
    BLOCK = "block"
    DROP_NEW = "drop_new"
    DROP_OLDEST = "drop_oldest"


class Closed(Exception):
    """The buffer was closed while waiting; `rest`: the images of a batch it did not take."""

    def __init__(self, rest: list[Any] | None = None):
        super().__init__()
        self.rest = rest or []


class ImageBuffer:
    """A bounded FIFO of images (and unbounded control items) with an overflow policy."""

    def __init__(self, capacity: int, policy: Policy, on_drop: Callable[[Any], None] | None = None):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.policy = policy
        self._on_drop = on_drop or (lambda _item: None)
        self._items: deque[tuple[bool, Any]] = deque()  # (is_image, item)
        self._images = 0
        self.dropped = 0
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return self._images

    def resize(self, capacity: int) -> None:
        """Hold at most `capacity` images from now on (images already held above it stay)."""
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        with self._cond:
            self.capacity = capacity
            self._cond.notify_all()  # a producer that BLOCKs may have room now

    def put_image(self, image: Any) -> bool:
        """Add an image under the policy; False if it (BLOCK: never) was dropped."""
        dropped: list[Any] = []
        with self._cond:
            while self._images >= self.capacity and not self._closed:
                if self.policy is Policy.BLOCK:
                    self._cond.wait(0.5)
                    continue
                self.dropped += 1
                if self.policy is Policy.DROP_NEW:
                    dropped.append(image)
                    break
                dropped.append(self._evict_oldest())
            if self._closed:
                raise Closed()
            accepted = not dropped or dropped[-1] is not image
            if accepted:
                self._items.append((True, image))
                self._images += 1
                self._cond.notify_all()
        for item in dropped:
            self._on_drop(item)
        return accepted

    def put_images(self, images: list[Any]) -> None:
        """Add a batch of images in order, each under the policy, with one lock hold (not one per image). A
        buffer closed midway raises Closed with the images it did not take."""
        dropped: list[Any] = []
        taken = 0
        with self._cond:
            while taken < len(images) and not self._closed:
                if self._images >= self.capacity:
                    if self.policy is Policy.BLOCK:
                        self._cond.notify_all()  # the consumer takes what is here while the producer waits
                        self._cond.wait(0.5)
                        continue
                    self.dropped += 1
                    if self.policy is Policy.DROP_NEW:
                        dropped.append(images[taken])
                        taken += 1
                        continue
                    dropped.append(self._evict_oldest())
                self._items.append((True, images[taken]))
                self._images += 1
                taken += 1
            self._cond.notify_all()
            closed = self._closed
        for item in dropped:
            self._on_drop(item)
        if closed and taken < len(images):
            raise Closed(images[taken:])

    def _evict_oldest(self) -> Any:
        for i, (is_image, item) in enumerate(self._items):
            if is_image:
                del self._items[i]
                self._images -= 1
                return item
        raise AssertionError("no image to evict")  # unreachable: called only when images are buffered

    def put_control(self, item: Any) -> None:
        """Add a control item; it is kept in order with the images and never dropped."""
        with self._cond:
            if self._closed:
                raise Closed()
            self._items.append((False, item))
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        """The oldest item as (is_image, item); raises TimeoutError or Closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError()
                self._cond.wait(remaining)
            is_image, item = self._items.popleft()
            if is_image:
                self._images -= 1
            self._cond.notify_all()
            return is_image, item

    def get_many(self, limit: int) -> list[tuple[bool, Any]]:
        """The oldest items, at least one and at most `limit`, as (is_image, item); waits for the first one;
        raises Closed."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed()
                self._cond.wait()
            n = min(limit, len(self._items))
            items = [self._items.popleft() for _ in range(n)]
            self._images -= sum(1 for is_image, _ in items if is_image)
            self._cond.notify_all()
            return items

    def reset_dropped(self) -> None:
        with self._cond:
            self.dropped = 0

    def close(self) -> list[Any]:
        """Stop accepting items; returns the images still buffered (the caller releases them)."""
        with self._cond:
            self._closed = True
            left = [item for is_image, item in self._items if is_image]
            self._items.clear()
            self._images = 0
            self._cond.notify_all()
            return left
