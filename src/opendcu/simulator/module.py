"""A simulated detector module: answers configuration packets and sends its frames as UDP data packets."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import numpy as np

from opendcu.geometry.models import DetectorModel
from opendcu.hardware.config_packet import ConfigPacket, ConfigPacketError, Kind, Status, TriggerMode
from opendcu.hardware.udp_packet import (
    DEFAULT_PAYLOAD,
    HEADER_DTYPE,
    HEADER_SIZE,
    HEADER_VERSION,
    packets_per_frame,
)
from opendcu.lifecycle import StopSignal
from opendcu.geometry import DetectorLayout
from opendcu.simulator.physics import render_module_frame
from opendcu.simulator.scenes import Scene, make_scene

log = logging.getLogger(__name__)

REQUIRED_CONFIG = ("count_time", "frame_time", "nimages", "ntrigger", "trigger_mode", "dest_host", "dest_port", "series_id")


class SimulatedModule:
    """One module: a config-port server plus an acquisition thread that streams frames."""

    def __init__(self, model: DetectorModel, module_id: int, host: str = "127.0.0.1"):
        self.model = model
        self.layout = DetectorLayout(model)
        self.module_id = module_id
        self.row, self.column = model.module_position(module_id)
        self.config_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.config_sock.bind((host, 0))
        self.config_sock.settimeout(0.2)
        self.data_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.data_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        self.state = "idle"
        self.config: dict[str, Any] = {}
        self.scene: Scene | None = None
        self.frames_sent = 0
        self.packets_sent = 0
        self._next_frame = 1
        self._triggers_done = 0
        self._abort = threading.Event()
        self._acq: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def config_port(self) -> int:
        return self.config_sock.getsockname()[1]

    # -- config link ---------------------------------------------------------------------------------------
    def serve(self, stop: StopSignal) -> None:
        """Answer configuration packets until `stop` is set."""
        while not stop.is_set():
            try:
                data, peer = self.config_sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                request = ConfigPacket.decode(data)
            except ConfigPacketError as exc:
                log.warning("module %d: dropped malformed config packet: %s", self.module_id, exc)
                continue
            if request.is_ack:
                continue
            try:
                fields = self.handle(request)
                answer = request.ack(Status.OK, **fields)
            except ValueError as exc:
                answer = request.ack(Status.ERROR, message=str(exc))
            answer.module_id = self.module_id
            self.config_sock.sendto(answer.encode(), peer)
        self.stop_acquisition()

    def handle(self, request: ConfigPacket) -> dict[str, Any]:
        """Apply one request; return fields for the acknowledgement. ValueError means a rejected request."""
        kind = Kind(request.kind)
        if kind is Kind.STOP:
            self.stop_acquisition()  # outside the lock: the acquisition thread takes it when it ends
            with self._lock:
                self.state = "idle"
                return {"state": self.state, "frames_sent": self.frames_sent}
        with self._lock:
            if kind is Kind.CONFIGURE:
                return self._configure(request.fields)
            if kind in (Kind.TRIGGER, Kind.EXT_TRIGGER):
                return self._trigger(kind, request.fields)
            return {"state": self.state, "frames_sent": self.frames_sent, "packets_sent": self.packets_sent}

    def _configure(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self.state == "acquiring":
            raise ValueError("cannot configure while acquiring")
        missing = [k for k in REQUIRED_CONFIG if k not in fields]
        if missing:
            raise ValueError(f"missing config fields: {', '.join(missing)}")
        if fields["count_time"] <= 0 or fields["frame_time"] < fields["count_time"]:
            raise ValueError("need 0 < count_time <= frame_time")
        if fields["nimages"] < 1 or fields["ntrigger"] < 1:
            raise ValueError("nimages and ntrigger must be >= 1")
        if fields["trigger_mode"] not in TriggerMode._value2member_map_:
            raise ValueError(f"unknown trigger mode {fields['trigger_mode']}")
        cfg = dict(fields)
        cfg.setdefault("payload_size", DEFAULT_PAYLOAD)
        cfg.setdefault("seed", 0)
        if not 64 <= cfg["payload_size"] <= 8960 or cfg["payload_size"] % 8:
            raise ValueError("payload_size must be a multiple of 8 in [64, 8960]")
        self.scene = make_scene(self.model, cfg["seed"], cfg.get("content"))  # ValueError -> rejected config
        self.config = cfg
        self.state = "armed"
        self._next_frame = 1
        self._triggers_done = 0
        self.frames_sent = self.packets_sent = 0
        return {"state": self.state}

    def _trigger(self, kind: Kind, fields: dict[str, Any]) -> dict[str, Any]:
        if self.state != "armed":
            raise ValueError(f"trigger while {self.state}")
        mode = TriggerMode(self.config["trigger_mode"])
        external = mode in (TriggerMode.EXTS, TriggerMode.EXTE)
        if external != (kind is Kind.EXT_TRIGGER):
            raise ValueError(f"{kind.name} not accepted in trigger mode {mode.name.lower()}")
        nframes = self.config["nimages"] if mode in (TriggerMode.INTS, TriggerMode.EXTS) else 1
        count_time = fields.get("trigger_count_time", self.config["count_time"])
        self.state = "acquiring"
        self._abort.clear()
        self._acq = threading.Thread(
            target=self._acquire, args=(nframes, count_time, external), name=f"module{self.module_id}-acq", daemon=True
        )
        self._acq.start()
        return {"state": self.state}

    def stop_acquisition(self) -> None:
        self._abort.set()
        if self._acq is not None:
            self._acq.join()
            self._acq = None

    # -- data path -----------------------------------------------------------------------------------------
    def _acquire(self, nframes: int, count_time: float, external: bool) -> None:
        cfg = self.config
        dest = (cfg["dest_host"], cfg["dest_port"])
        payload = cfg["payload_size"]
        frame_bytes = self.model.module.raw_pixels * 2
        npackets = packets_per_frame(frame_bytes, payload)
        headers = np.zeros(npackets, dtype=HEADER_DTYPE)
        headers["packet_number"] = np.arange(npackets)
        headers["series_id"] = cfg["series_id"]
        headers["module_id"] = self.module_id
        headers["row"], headers["column"] = self.row, self.column
        headers["nsubframes"] = 1
        headers["det_type"] = self.model.module.udp_detector_type
        headers["version"] = HEADER_VERSION
        headers["exp_length"] = int(round(count_time * 1e7))
        if external:
            headers["flags"] = 1 << 31
        datagram = bytearray(HEADER_SIZE + payload)
        t0 = time.monotonic()
        for i in range(nframes):
            start = t0 + i * cfg["frame_time"]
            delay = start - time.monotonic()
            if delay > 0 and self._abort.wait(delay):
                break
            if self._abort.is_set():
                break
            frame_number = self._next_frame
            raw = render_module_frame(self.scene, self.layout, self.module_id, frame_number, cfg["seed"]).tobytes()
            headers["frame_number"] = frame_number
            headers["timestamp"] = int((time.monotonic() - t0) * 1e7)
            for p in range(npackets):
                chunk = raw[p * payload : (p + 1) * payload]
                datagram[:HEADER_SIZE] = headers[p].tobytes()
                datagram[HEADER_SIZE : HEADER_SIZE + len(chunk)] = chunk
                self.data_sock.sendto(memoryview(datagram)[: HEADER_SIZE + len(chunk)], dest)
            self._next_frame += 1
            self.frames_sent += 1
            self.packets_sent += npackets
        with self._lock:
            self._triggers_done += 1
            done = self._triggers_done >= self.config["ntrigger"] or self._abort.is_set()
            self.state = "idle" if done else "armed"

    def close(self) -> None:
        self.stop_acquisition()
        self.config_sock.close()
        self.data_sock.close()
