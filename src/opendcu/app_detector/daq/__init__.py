"""DAQ: receive module UDP packets and assemble raw frames in shared memory."""

from __future__ import annotations

import threading

from opendcu.app_detector.daq.assembler import AssembledFrame, DaqCounters, FrameAssembler
from opendcu.app_detector.daq.receiver import ModuleReceiver

__all__ = ["AssembledFrame", "Daq", "DaqCounters", "FrameAssembler", "ModuleReceiver"]


class Daq:
    """All module receivers of one detector plus the assembler they feed."""

    def __init__(self, assembler: FrameAssembler, host: str = "127.0.0.1"):
        self.assembler = assembler
        self.receivers = [ModuleReceiver(assembler, m, host) for m in range(assembler.model.n_modules)]
        self._stop = threading.Event()
        self._expiry = threading.Thread(target=self._expire_loop, name="daq-expiry", daemon=True)

    def data_addresses(self) -> dict[int, tuple[str, int]]:
        """Where each module must send its data packets."""
        return {r.module_id: r.address for r in self.receivers}

    def start(self) -> None:
        for r in self.receivers:
            r.start()
        self._expiry.start()

    def stop(self) -> None:
        self._stop.set()
        for r in self.receivers:
            r.stop()

    def _expire_loop(self) -> None:
        while not self._stop.wait(0.05):
            self.assembler.expire()
