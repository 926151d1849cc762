"""app-calibration as a client of app-detector: the same gRPC Control and Monitor calls the REST gateway makes.

The procedures see the detector only through this: SIMPLON keys and commands, the images of a series as the
Monitor hands them out (TIFF), and the `simulator` module's inputs (scene, the beam's flux) that a real
calibration gets from the beamline (shutter, attenuators, a flood source).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tifffile

from opendcu.proto import control_pb2 as pb
from opendcu.proto import control_pb2_grpc, interfaces_pb2, interfaces_pb2_grpc
from opendcu.proto.values import from_proto, to_proto

MAX_MESSAGE = 256 << 20
API = "1.8.0"
#: images one series takes at most (the Monitor buffers them until fetched)
MAX_SERIES_IMAGES = 16


class DetectorRefused(Exception):
    """app-detector refused a request (gRPC status code and its text)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """The procedure was cancelled."""


class DetectorLink:
    """Synchronous client of app-detector's Control and Monitor services."""

    def __init__(self, address: str, cancelled: Callable[[], bool] = lambda: False):
        self.channel = grpc.insecure_channel(
            address,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self.control = control_pb2_grpc.ControlStub(self.channel)
        self.monitor = interfaces_pb2_grpc.MonitorStub(self.channel)
        self.cancelled = cancelled
        self._lock = threading.Lock()

    def close(self) -> None:
        self.channel.close()

    def _call(self, rpc, request, timeout: float = 60.0):
        try:
            return rpc(request, timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise DetectorRefused(exc.code(), exc.details() or str(exc.code())) from None

    # -- SIMPLON ----------------------------------------------------------------------------------------------------
    def get(self, key: str, module: str = "detector", task: str = "config") -> Any:
        ref = pb.ParameterRef(api_version=API, module=module, task=task, key=key)
        return from_proto(self._call(self.control.GetParameter, ref).value)

    def set(self, key: str, value: Any, module: str = "detector") -> list[str]:
        ref = pb.ParameterRef(api_version=API, module=module, task="config", key=key)
        value_type = "float" if isinstance(value, float) else None
        return list(
            self._call(
                self.control.SetParameter, pb.SetParameterRequest(ref=ref, value=to_proto(value, value_type))
            ).keys
        )

    def reset(self, key: str, module: str = "detector") -> None:
        self._call(self.control.ResetParameter, pb.ParameterRef(api_version=API, module=module, task="config", key=key))

    def command(self, name: str, module: str = "detector", argument: Any = None, timeout: float = 600.0) -> Any:
        request = pb.CommandRequest(api_version=API, module=module, command=name)
        if argument is not None:
            request.argument.CopyFrom(to_proto(argument))
        return self._call(self.control.Command, request, timeout)

    def state(self) -> str:
        return str(self.get("state", task="status"))

    # -- the scene (simulator side) ----------------------------------------------------------------------------------
    def set_scene(self, scene: dict[str, Any] | None) -> None:
        """What the beam shows from the next arm on (None: the server's scene)."""
        self.set("scene", json.dumps(scene) if scene else "", module="simulator")

    # -- series -----------------------------------------------------------------------------------------------------
    def take_series(self, nimages: int, count_time: float) -> np.ndarray:
        """Arm, trigger and fetch `nimages` images (float64 [n, h, w]) of count time `count_time` through the
        Monitor; the images are as app-detector delivers them with the present correction switches."""
        if not 1 <= nimages <= MAX_SERIES_IMAGES:
            raise ValueError(f"a calibration series takes 1..{MAX_SERIES_IMAGES} images")
        if self.cancelled():
            raise Cancelled()
        self.set("nimages", nimages)
        self.set("ntrigger", 1)
        self.set("trigger_mode", "ints")
        self.set("frame_time", count_time + 0.001)
        self.set("count_time", count_time)
        self.command("clear", module="monitor")
        self.command("arm")
        try:
            self.command("trigger", timeout=nimages * (count_time + 0.01) + 60)
        except BaseException:
            self.command("abort")
            raise
        images = []
        for _ in range(nimages):
            reply = self._call(
                self.monitor.GetImage,
                interfaces_pb2.MonitorImageRequest(which=interfaces_pb2.MonitorImageRequest.NEXT, timeout_ms=30000),
                timeout=60,
            )
            images.append(tifffile.imread(io.BytesIO(reply.tiff)).astype(np.float64))
        self.wait_idle()
        return np.stack(images)

    def wait_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state() != "idle":
            if time.monotonic() > deadline:
                raise DetectorRefused(grpc.StatusCode.DEADLINE_EXCEEDED, "the detector did not return to idle")
            time.sleep(0.02)


#: detector keys a procedure changes; they are put back afterwards
SAVED_DETECTOR_KEYS = (
    "photon_energy",
    "threshold_energy",
    "count_time",
    "frame_time",
    "nimages",
    "ntrigger",
    "trigger_mode",
    "flatfield_correction_applied",
    "pixel_mask_applied",
    "countrate_correction_applied",
    "virtual_pixel_correction_applied",
    "auto_summation",
)
SAVED_MONITOR_KEYS = ("mode", "buffer_size", "discard_new")
SAVED_OTHER = (("filewriter", "mode"), ("stream", "mode"), ("analysis", "mode"), ("simulator", "scene"))


class SavedConfig:
    """The keys a procedure changes, read before it starts and written back after it (also when it fails)."""

    def __init__(self, link: DetectorLink):
        self.link = link
        self.values: list[tuple[str, str, Any]] = []
        for key in SAVED_DETECTOR_KEYS:
            self.values.append(("detector", key, link.get(key)))
        for key in SAVED_MONITOR_KEYS:
            self.values.append(("monitor", key, link.get(key, module="monitor")))
        for module, key in SAVED_OTHER:
            try:
                self.values.append((module, key, link.get(key, module=module)))
            except DetectorRefused:
                pass  # a module this detector does not have

    def restore(self) -> None:
        # photon energy first: it moves the threshold, which is then put back
        for module, key, value in self.values:
            try:
                self.link.set(key, value, module=module)
            except DetectorRefused:
                pass  # e.g. frame_time limits in between: the next pass puts it back
        for module, key, value in self.values:
            if key in ("count_time", "frame_time", "threshold_energy"):
                try:
                    self.link.set(key, value, module=module)
                except DetectorRefused:
                    pass
