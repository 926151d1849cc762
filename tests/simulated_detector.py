"""Test harness: real simulated modules and a real DAQ in one process, talking real UDP on loopback.

The modules run their config servers in threads and are driven by the real module driver (config packets and
acknowledgements); the DAQ receivers feed a FrameAssembler whose frames are copied out of their slots as they
are handed on. `expected()` re-renders what a module must have sent with the simulator's physics.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opendcu.app_detector.daq import AssembledFrame, Daq, DaqCounters, FrameAssembler
from opendcu.app_detector.daq.assembler import NO_SLOT, RAW_ERROR
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.geometry import DetectorModel, get_model
from opendcu.hardware.config_packet import Kind, TriggerMode
from opendcu.hardware.module_driver import ModuleAddress, ModuleDriver
from opendcu.simulator.module import SimulatedModule
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene


@dataclass
class Received:
    """One frame the DAQ handed on: its metadata and a copy of its slot."""

    info: AssembledFrame
    raw: np.ndarray  # uint16 [nsubframes, n_modules, raw_h, raw_w]


@dataclass
class Series:
    """What a test ran: enough to re-render every frame."""

    model: DetectorModel
    seed: int
    count_time: float
    nsubframes: int
    content: dict[str, Any]
    scene: Any = field(default=None)

    def expected(self, frame_number: int, subframe: int = 0, count_time: float | None = None) -> np.ndarray:
        """The read-out values [n_modules, raw_h, raw_w] the modules must have sent."""
        if self.scene is None:
            self.scene = make_scene(self.model, self.seed, self.content)
        return np.stack(
            [self._renderer(m).render(frame_number, subframe, count_time) for m in range(self.model.n_modules)]
        )

    def _renderer(self, m: int) -> ModuleRenderer:
        cache = self.__dict__.setdefault("_renderers", {})
        if m not in cache:
            cache[m] = ModuleRenderer(self.scene, self.model, m, self.seed, self.count_time, self.nsubframes)
        return cache[m]


class SimulatedDetector:
    """Simulated modules of `detector` + a DAQ for `daq_detector` (default the same; an ROI model is allowed)."""

    def __init__(self, detector: str, daq_detector: str | None = None, n_slots: int = 16, slot_subframes: int = 1):
        self.sim_model = get_model(detector)
        self.model = get_model(daq_detector or detector)
        self.frame_bytes = self.model.n_modules * self.model.module.raw_pixels * 2
        self.ring = SlotRing(n_slots, slot_subframes * self.frame_bytes)
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(n_slots):
            self.free.put(i)
        self.frames: dict[int, Received] = {}
        self.order: list[int] = []
        self.assembler = FrameAssembler(self.model, self.ring, self.free, self._emit)
        self.daq = Daq(self.assembler)
        self.daq.start()
        self.modules = [SimulatedModule(self.sim_model, i) for i in range(self.sim_model.n_modules)]
        self._stop = threading.Event()
        for m in self.modules:
            threading.Thread(target=m.serve, args=(self._stop,), daemon=True).start()
        self.link: ModuleDriver | None = None
        self.series_id = 0

    def _emit(self, frame: AssembledFrame) -> None:
        shape = (frame.nsubframes, self.model.n_modules, *self.model.module.raw_shape)
        if frame.slot == NO_SLOT:  # nothing arrived: the pipeline would make it all invalid
            raw = np.full(shape, RAW_ERROR, dtype=np.uint16)
        else:
            raw = self.ring.array(frame.slot, np.uint16, shape).copy()
            self.free.put(frame.slot)
        self.frames[frame.frame_number] = Received(frame, raw)
        self.order.append(frame.frame_number)

    def partition(self, nsubframes: int) -> int:
        """Re-cut the raw ring into slots of `nsubframes` sub-frames between series (as the DataPath does at arm;
        here every slot is home at once: frames are copied out when emitted)."""
        self.assembler.release_slots()
        home = sorted(self.free.get_nowait() for _ in range(self.free.qsize()))
        assert home == list(range(self.ring.n_slots)), f"raw slots not home: {home}"
        n = self.ring.partition(nsubframes * self.frame_bytes, max_slots=1024)
        for i in range(n):
            self.free.put(i)
        return n

    def links(self, module_ids: list[int] | None = None) -> ModuleDriver:
        """A driver for some of the modules (default: the DAQ model's modules)."""
        ids = module_ids or [self.model.physical_module(m) for m in range(self.model.n_modules)]
        return ModuleDriver(
            [ModuleAddress(m.module_id, "127.0.0.1", m.config_port) for m in self.modules if m.module_id in ids]
        )

    def arm(
        self,
        nimages: int,
        *,
        frame_time: float = 0.005,
        count_time: float | None = None,
        content: dict[str, Any] | None = None,
        nsubframes: int = 1,
        trigger_mode: str = "ints",
        ntrigger: int = 1,
        drops: dict[int, list] | None = None,
        payload_size: int = 8192,
        seed: int = 7,
        share_timeout: float | None = None,
        **extra: Any,
    ) -> Series:
        """Start a series on the DAQ and configure the modules (like arm). `drops`: module id -> packets.
        `share_timeout`: how long the DAQ waits for a frame's missing packets (default: the DCU's rule)
        for tests that must act before it runs out, also on a loaded machine."""
        self.series_id += 1
        self.frames.clear()
        self.order.clear()
        count_time = count_time or frame_time * 0.9
        content = content or {"kind": "flood", "flux": 500.0}
        content = {**content, "experiment": {"count_time_s": count_time}}
        per_image = nimages if trigger_mode in ("ints", "exts") else 1
        self.assembler.start_series(
            self.series_id, per_image * ntrigger, payload_size, frame_time, nsubframes, timeout=share_timeout
        )
        per_module = {
            mid: {"dest_host": host, "dest_port": port} for mid, (host, port) in self.daq.data_addresses().items()
        }
        for mid, packets in (drops or {}).items():
            per_module[mid]["drop_packets"] = json.dumps(packets)
        if self.link is not None:
            self.link.close()
        self.link = self.links(list(per_module))
        self.link.broadcast(
            Kind.CONFIGURE,
            per_module=per_module,
            count_time=count_time,
            frame_time=frame_time,
            nimages=nimages,
            ntrigger=ntrigger,
            trigger_mode=TriggerMode[trigger_mode.upper()],
            payload_size=payload_size,
            series_id=self.series_id,
            seed=seed,
            content=json.dumps(content),
            nsubframes=nsubframes,
            **extra,
        )
        return Series(self.model, seed, count_time, nsubframes, content)

    def trigger(self, external: bool = False, **fields: Any) -> None:
        self.link.broadcast(Kind.EXT_TRIGGER if external else Kind.TRIGGER, **fields)

    def run(self, nimages: int, timeout: float = 30.0, **arm: Any) -> tuple[Series, DaqCounters]:
        """Arm, trigger once (ints), wait for every frame and finish the series."""
        series = self.arm(nimages, **arm)
        self.trigger()
        return series, self.finish(nimages, timeout)

    def finish(self, expected: int, timeout: float = 30.0) -> DaqCounters:
        self.assembler.wait_frames(expected, timeout)
        return self.assembler.finish(timeout, expected)

    def wait(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        self._stop.set()
        if self.link is not None:
            self.link.close()
        self.daq.stop()
        for m in self.modules:
            m.close()
        self.ring.close()
