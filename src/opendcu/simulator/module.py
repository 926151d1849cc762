"""A simulated detector module: answers configuration packets and sends its frames as UDP data packets.

Life of a series on one module:
- CONFIGURE (arm): check the fields, build the scene and the module's renderer (simulator/physics.py) with its
  noise bank, aim the data transmitter at the DAQ port; state `armed`. A retried request (same sequence number
  from the same peer) is answered again without being redone.
- TRIGGER (ints, inte) or EXT_TRIGGER (the simulated external trigger input: exts edge, exte gate): queue one
  trigger; the acquisition thread takes triggers in order. ints/exts take `nimages` images at the frame_time
  cadence; inte/exte take one image whose count time is the trigger's `trigger_count_time` (inte: the software
  trigger's value; exte: the gate length). An image leaves the module when its exposure ends; each image is
  `nsubframes` sub-frames (auto-summation), sent at the 16-bit counter depth. After `ntrigger` triggers the
  module is `idle` again. Triggers beyond `ntrigger` are refused.
- STOP: abort at once; the acknowledgement reports how many images were sent.

Loss injection for tests: CONFIGURE `drop_packets` = JSON [[frame, packet] or [frame, subframe, packet], ...]
lists packets the module never sends.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from typing import Any

import numpy as np

from opendcu.geometry.models import DetectorModel
from opendcu.hardware.config_packet import ConfigPacket, ConfigPacketError, Kind, Status, TriggerMode
from opendcu.hardware.counters import encode_counts
from opendcu.hardware.summation import MODULE_MAX_SUBFRAMES
from opendcu.hardware.udp_packet import DEFAULT_PAYLOAD, PacketLayout
from opendcu.lifecycle import StopSignal
from opendcu.simulator.physics import ModuleRenderer, PhysicsVariant
from opendcu.simulator.scenes import make_scene
from opendcu.simulator.scenes.base import DEFAULT_SCENE, parse_spec
from opendcu.simulator.sender import DataSender

log = logging.getLogger(__name__)

REQUIRED_CONFIG = (
    "count_time",
    "frame_time",
    "nimages",
    "ntrigger",
    "trigger_mode",
    "dest_host",
    "dest_port",
    "series_id",
)
MAX_TRIGGER_COUNT_TIME = 3600.0


def parse_drops(text: str) -> list[tuple[int, int, int]]:
    """The `drop_packets` field: [[frame, packet] | [frame, subframe, packet], ...] -> (frame, subframe, packet)."""
    try:
        items = json.loads(text) if text else []
        out = []
        for item in items:
            values = [int(v) for v in item]
            if len(values) not in (2, 3) or min(values) < 0:
                raise ValueError
            out.append((values[0], 0, values[1]) if len(values) == 2 else tuple(values))
        return out
    except (ValueError, TypeError):
        raise ValueError(
            f"drop_packets must be JSON [[frame, packet] or [frame, subframe, packet], ...], got {text!r:.80}"
        ) from None


class SimulatedModule:
    """One module: a config-port server plus an acquisition thread that streams frames."""

    def __init__(self, model: DetectorModel, index: int, host: str = "127.0.0.1", scene: dict[str, Any] | None = None):
        self.model = model
        self.scene = dict(scene or DEFAULT_SCENE)  # what this module sees; the DCU sends only the experiment
        self.index = index  # position among the model's modules
        self.module_id = model.physical_module(index)  # the id its packets carry
        self.config_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.config_sock.bind((host, 0))
        self.config_sock.settimeout(0.2)
        self.sender = DataSender(host)
        self.state = "idle"
        self.config: dict[str, Any] = {}
        self.renderer: ModuleRenderer | None = None
        self.layout: PacketLayout | None = None
        self.frames_sent = 0
        self.packets_sent = 0
        self._triggers: queue.Queue[tuple[int, float] | None] = queue.Queue()
        self._triggers_received = 0
        self._triggers_done = 0
        self._next_frame = 1
        self._wire_bank: np.ndarray | None = None
        self._acq: threading.Thread | None = None
        self._last_answer: tuple[tuple, ConfigPacket] | None = None
        self.error = ""  # why the last acquisition failed (state "error")
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
            key = (peer, request.kind, request.seq)
            if self._last_answer is not None and self._last_answer[0] == key:
                answer = self._last_answer[1]  # a retry of the request just handled: answer again, do not redo
            else:
                try:
                    fields = self.handle(request)
                    answer = request.ack(Status.OK, **fields)
                except ValueError as exc:
                    answer = request.ack(Status.ERROR, message=str(exc))
                except Exception as exc:  # noqa: BLE001 - a module answers every request and keeps running
                    log.exception("module %d: %s failed", self.module_id, Kind(request.kind).name)
                    answer = request.ack(Status.ERROR, message=f"internal error: {exc}")
                answer.module_id = self.module_id
                self._last_answer = (key, answer)
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
            status = {"state": self.state, "frames_sent": self._live_frames_sent(), "packets_sent": self.packets_sent}
            return status | ({"message": self.error} if self.error else {})

    def _scene_spec(self, cfg: dict[str, Any], content: dict[str, Any] | None = None) -> dict[str, Any]:
        """This series' scene: the test pattern, a scene of the packet's own (`content`: test harnesses, the
        DCU's `simulator/config/scene`) or this module's, rendered for the experiment the DCU sent (JSON field
        `experiment`)."""
        if cfg.get("test_pattern"):
            return {"kind": "pattern"}
        if content is None:
            content = parse_spec(cfg.get("content"))
            content.pop("physics", None)
        spec = dict(content) or dict(self.scene)
        if cfg.get("experiment"):
            try:
                experiment = json.loads(cfg["experiment"])
            except json.JSONDecodeError as exc:
                raise ValueError(f"experiment is not JSON: {exc}") from None
            spec["experiment"] = {**spec.get("experiment", {}), **experiment}
        return spec

    def _configure(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self.state == "acquiring":
            raise ValueError("cannot configure while acquiring")
        missing = [k for k in REQUIRED_CONFIG if k not in fields]
        if missing:
            raise ValueError(f"missing config fields: {', '.join(missing)}")
        if not 0 < fields["count_time"] <= fields["frame_time"] <= MAX_TRIGGER_COUNT_TIME:
            raise ValueError(f"need 0 < count_time <= frame_time <= {MAX_TRIGGER_COUNT_TIME} s")
        if not 0 < fields["dest_port"] < 65536:
            raise ValueError(f"dest_port {fields['dest_port']} is not a UDP port")
        if fields["nimages"] < 1 or fields["ntrigger"] < 1:
            raise ValueError("nimages and ntrigger must be >= 1")
        if fields["trigger_mode"] not in TriggerMode._value2member_map_:
            raise ValueError(f"unknown trigger mode {fields['trigger_mode']}")
        cfg = dict(fields)
        cfg.setdefault("payload_size", DEFAULT_PAYLOAD)
        cfg.setdefault("seed", 0)
        cfg.setdefault("nsubframes", 1)
        if not 1 <= cfg["nsubframes"] <= MODULE_MAX_SUBFRAMES:
            raise ValueError(f"nsubframes must be in [1, {MODULE_MAX_SUBFRAMES}]")
        model, index = self._series_geometry(cfg.get("roi_mode", ""))
        layout = PacketLayout.for_module(model.module, cfg["payload_size"])  # ValueError -> rejected config
        drops = parse_drops(cfg.get("drop_packets", ""))
        content = parse_spec(cfg.get("content"))  # ValueError -> rejected config
        variant = PhysicsVariant.from_json(content.pop("physics", None))  # the simulator side's physics changes
        scene = make_scene(model, cfg["seed"], self._scene_spec(cfg, content))  # ValueError -> rejected config
        renderer = ModuleRenderer(
            scene,
            model,
            index,
            cfg["seed"],
            cfg["count_time"],
            cfg["nsubframes"],
            photon_energy=cfg.get("photon_energy"),
            threshold_energy=cfg.get("threshold_energy"),
            variant=variant,
        )
        self.sender.configure(
            (cfg["dest_host"], cfg["dest_port"]),
            layout,
            series_id=cfg["series_id"],
            module_id=self.module_id,
            position=model.module_position(index),
            det_type=model.module.udp_detector_type,
            nsubframes=cfg["nsubframes"],
            drops=drops,
        )
        # build the noise bank now, so that every module starts on the trigger (arm waits for this)
        renderer.prepare()
        wire_bank = None
        if renderer.static:
            wire_bank = encode_counts(renderer.bank, model.module.counter).reshape(renderer.bank_frames, -1)
        self.config, self.renderer, self.layout, self._wire_bank = cfg, renderer, layout, wire_bank
        self.state = "armed"
        self.error = ""
        self._next_frame = 1
        self._triggers = queue.Queue()
        self._triggers_received = self._triggers_done = 0
        self.frames_sent = self.packets_sent = 0
        host, port = self.sender.sock.getsockname()
        return {"state": self.state, "data_source_host": host, "data_source_port": port}

    def _series_geometry(self, roi_mode: str) -> tuple[DetectorModel, int]:
        """The model this series renders with (the detector, or its ROI) and this module's index in it."""
        model = self.model.physical_model.roi(roi_mode) if roi_mode not in ("", "disabled") else self.model
        for index in range(model.n_modules):
            if model.physical_module(index) == self.module_id:
                return model, index
        raise ValueError(f"module {self.module_id} is not read out in roi_mode {roi_mode}")

    def _trigger(self, kind: Kind, fields: dict[str, Any]) -> dict[str, Any]:
        if self.state not in ("armed", "acquiring"):
            raise ValueError(f"trigger while {self.state}")
        mode = TriggerMode(self.config["trigger_mode"])
        external = mode in (TriggerMode.EXTS, TriggerMode.EXTE)
        if external != (kind is Kind.EXT_TRIGGER):
            raise ValueError(f"{kind.name} not accepted in trigger mode {mode.name.lower()}")
        if self._triggers_received >= self.config["ntrigger"]:
            raise ValueError(f"all {self.config['ntrigger']} triggers of the series were received")
        count_time = float(fields.get("trigger_count_time", self.config["count_time"]))
        if not 0 < count_time <= MAX_TRIGGER_COUNT_TIME:
            raise ValueError(f"trigger_count_time must be in (0, {MAX_TRIGGER_COUNT_TIME}] s, got {count_time}")
        self._triggers_received += 1
        self._triggers.put((time.monotonic_ns(), count_time))
        if self._acq is None or not self._acq.is_alive():
            self.sender.abort[:] = 0
            self._acq = threading.Thread(target=self._acquire, name=f"module{self.module_id}-acq", daemon=True)
            self._acq.start()
        self.state = "acquiring"
        return {"state": self.state}

    def stop_acquisition(self) -> None:
        self.sender.abort[0] = 1
        self._triggers.put(None)
        if self._acq is not None:
            self._acq.join()
            self._acq = None

    def _live_frames_sent(self) -> int:
        return self.frames_sent + (int(self.sender.abort[1]) if self._acq is not None else 0)

    # -- data path -----------------------------------------------------------------------------------------
    def _acquire(self) -> None:
        try:
            self._take_triggers()
        except Exception as exc:  # noqa: BLE001 - e.g. a scene that fails to render: report it, stay reachable
            log.exception("module %d: acquisition failed", self.module_id)
            with self._lock:
                self.state = "error"
                self.error = f"acquisition failed: {exc}"

    def _take_triggers(self) -> None:
        """Take queued triggers until the series' triggers are done or the module is stopped."""
        cfg = self.config
        mode = TriggerMode(cfg["trigger_mode"])
        per_trigger = cfg["nimages"] if mode in (TriggerMode.INTS, TriggerMode.EXTS) else 1
        external = mode in (TriggerMode.EXTS, TriggerMode.EXTE)
        busy_until = 0
        self.sender.start_clock(time.monotonic_ns())
        while True:
            item = self._triggers.get()
            if item is None or self.sender.abort[0]:
                break
            arrival, count_time = item
            start = max(arrival, busy_until)
            sent = self._take(per_trigger, start, count_time, external)
            busy_until = start + per_trigger * int(max(cfg["frame_time"], count_time) * 1e9)
            with self._lock:
                self.frames_sent += sent
                self.packets_sent += sent * cfg["nsubframes"] * self.layout.npackets
                self._next_frame += sent
                self.sender.abort[1] = 0
                if sent < per_trigger:  # stopped
                    break
                self._triggers_done += 1
                if self._triggers_done >= cfg["ntrigger"]:
                    self.state = "idle"
                    break
                if self._triggers.empty():
                    self.state = "armed"

    def _take(self, nimages: int, start_ns: int, count_time: float, external: bool) -> int:
        """Acquire and send the images of one trigger; returns how many were sent."""
        cfg = self.config
        period = int(max(cfg["frame_time"], count_time) * 1e9)
        readout = start_ns + int(count_time * 1e9)  # an image leaves the module when its exposure ends
        bank = self._wire_bank
        if bank is not None and count_time == cfg["count_time"]:
            return self.sender.send(
                bank,
                self._next_frame,
                nimages,
                cyclic=True,
                first_due_ns=readout,
                period_ns=period,
                count_time=count_time,
                external=external,
            )
        for i in range(nimages):
            frame = self._next_frame + i
            subframes = [self.renderer.render(frame, s, count_time) for s in range(cfg["nsubframes"])]
            wire = np.stack([encode_counts(f, self.model.module.counter) for f in subframes])
            if (
                self.sender.send(
                    wire,
                    frame,
                    1,
                    cyclic=False,
                    first_due_ns=readout + i * period,
                    period_ns=period,
                    count_time=count_time,
                    external=external,
                )
                < 1
            ):
                return i
        return nimages

    def close(self) -> None:
        self.stop_acquisition()
        self.config_sock.close()
        self.sender.close()
