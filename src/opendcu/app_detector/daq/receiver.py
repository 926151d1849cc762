"""One UDP receiver per module: packets go straight from the socket into the frame's shared-memory slot."""

from __future__ import annotations

import logging
import socket
import threading

import numpy as np

from opendcu.app_detector.daq.assembler import FrameAssembler
from opendcu.hardware.udp_packet import HEADER_DTYPE, HEADER_SIZE, HEADER_VERSION

log = logging.getLogger(__name__)

SOCKET_BUFFER = 64 << 20


class ModuleReceiver:
    """Receives the data packets of one module on its own UDP port."""

    def __init__(self, assembler: FrameAssembler, module_id: int, host: str = "127.0.0.1", port: int = 0):
        self.assembler = assembler
        self.module_id = module_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"daq-module{self.module_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sock.close()

    def _run(self) -> None:
        asm = self.assembler
        module = asm.model.module
        buf = bytearray(65536)
        view = memoryview(buf)
        header = np.ndarray((), dtype=HEADER_DTYPE, buffer=buf)
        current = None  # the pending frame this module is filling
        current_count = 0
        while not self._stop.is_set():
            try:
                n = self.sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                return
            payload_size = asm.payload_size
            if n < HEADER_SIZE or header["version"] != HEADER_VERSION:
                asm.count("malformed")
                continue
            packet = int(header["packet_number"])
            if (
                header["module_id"] != self.module_id
                or header["det_type"] != module.udp_detector_type
            ):
                asm.count("foreign")
                continue
            start = packet * payload_size
            expected_len = min(payload_size, asm.module_bytes - start)
            if packet >= asm.npackets or n - HEADER_SIZE != expected_len:
                asm.count("malformed")
                continue
            frame_number = int(header["frame_number"])
            if current is None or current.frame_number != frame_number:
                current = asm.frame_for(int(header["series_id"]), frame_number)
                if current is None:
                    continue
                current_count = int(current.received[self.module_id].sum())
            if current.closed:  # handed on by the frame timeout: this packet came too late
                asm.count("late")
                current = None
                continue
            received = current.received[self.module_id]
            if received[packet]:
                asm.count("duplicate")
                continue
            offset = self.module_id * asm.module_bytes + start
            asm.ring.buffer[current.slot, offset : offset + expected_len] = np.frombuffer(
                view[HEADER_SIZE:n], dtype=np.uint8
            )
            received[packet] = True
            current_count += 1
            if current_count == asm.npackets:
                asm.module_complete(current)
                current = None
