"""DCU side of the module control link: send configuration packets, wait for acknowledgements."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opendcu.hardware.config_packet import ACK_BIT, ConfigPacket, ConfigPacketError, Kind, Status

log = logging.getLogger(__name__)


class ModuleError(RuntimeError):
    """A module did not answer, or answered with an error."""


@dataclass(frozen=True)
class ModuleAddress:
    module_id: int
    host: str
    config_port: int


#: how long a module may take to answer, by request: CONFIGURE builds the module's noise bank (~1 s for 4M)
ANSWER_DEADLINE = {Kind.CONFIGURE: 30.0}
DEFAULT_DEADLINE = 2.0


class JunkReport:
    """Malformed datagrams on a config socket, logged as one WARNING per `interval` (the first at once, then a
    count), so that a flood of junk cannot flood the log."""

    def __init__(self, interval: float = 10.0):
        self.interval = interval
        self.total = 0
        self._since_report = 0
        self._last_report = -float("inf")

    def note(self, module_id: int, error: Exception) -> None:
        self.total += 1
        self._since_report += 1
        now = time.monotonic()
        if now - self._last_report >= self.interval:
            log.warning(
                "module %d: ignored %d malformed answer(s) on the config socket (%d in all), the last: %s",
                module_id,
                self._since_report,
                self.total,
                error,
            )
            self._since_report = 0
            self._last_report = now


class ModuleLink:
    """Request/acknowledge exchange with one module over its UDP config port.

    A request is re-sent every `timeout` s until its acknowledgement arrives or its deadline passes; modules
    answer a repeated request again without redoing it."""

    def __init__(self, address: ModuleAddress, timeout: float = 0.5):
        self.address = address
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address.host, 0))
        self._sock.settimeout(timeout)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._junk = JunkReport()
        #: where the module's data packets come from, as its last CONFIGURE acknowledgement said (host, port)
        self.data_source: tuple[str, int] | None = None

    def request(self, kind: Kind, **fields: Any) -> ConfigPacket:
        """Send one request and return the module's OK acknowledgement (retrying lost datagrams)."""
        with self._lock:
            packet = ConfigPacket(kind, next(self._seq), self.address.module_id, fields=fields)
            data = packet.encode()
            target = (self.address.host, self.address.config_port)
            deadline = time.monotonic() + ANSWER_DEADLINE.get(kind, DEFAULT_DEADLINE)
            while time.monotonic() < deadline:
                self._sock.sendto(data, target)
                ack = self._await_ack(packet)
                if ack is None:
                    continue
                if ack.status != Status.OK:
                    raise ModuleError(
                        f"module {self.address.module_id} rejected {kind.name}: {ack.fields.get('message', '?')}"
                    )
                if kind == Kind.CONFIGURE:
                    port = ack.fields.get("data_source_port")
                    self.data_source = (
                        (str(ack.fields.get("data_source_host", self.address.host)), int(port)) if port else None
                    )
                return ack
            raise ModuleError(f"module {self.address.module_id} at {target} did not acknowledge {kind.name}")

    def _await_ack(self, packet: ConfigPacket) -> ConfigPacket | None:
        while True:
            try:
                data, _ = self._sock.recvfrom(65536)
            except TimeoutError:
                return None
            try:
                ack = ConfigPacket.decode(data)
            except ConfigPacketError as exc:
                self._junk.note(self.address.module_id, exc)
                continue
            if ack.kind == packet.kind | ACK_BIT and ack.seq == packet.seq:
                return ack
            # a late answer to an earlier, retried request: drop it

    def close(self) -> None:
        self._sock.close()


class ModuleDriver:
    """Talks to all modules of a detector at once (requests go out in parallel): the `ModuleBackend`
    (backend.py) of modules on the network."""

    def __init__(self, addresses: list[ModuleAddress]):
        self.links = [ModuleLink(a) for a in sorted(addresses, key=lambda a: a.module_id)]
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(self.links))), thread_name_prefix="modlink")

    def broadcast(
        self,
        kind: Kind,
        per_module: dict[int, dict[str, Any]] | None = None,
        modules: Collection[int] | None = None,
        **fields: Any,
    ) -> list[ConfigPacket]:
        """Send the same request (plus optional per-module fields) to every module, or to the modules with the
        ids in `modules`; return their acks."""
        per_module = per_module or {}
        futures = [
            self._pool.submit(link.request, kind, **fields, **per_module.get(link.address.module_id, {}))
            for link in self.links
            if modules is None or link.address.module_id in modules
        ]
        return [f.result() for f in futures]

    # -- ModuleBackend ---------------------------------------------------------------------------------------------
    @property
    def module_ids(self) -> list[int]:
        return [link.address.module_id for link in self.links]

    def configure(self, modules: Collection[int], destinations: Mapping[int, tuple[str, int]], **settings: Any) -> None:
        per_module = {m: {"dest_host": host, "dest_port": port} for m, (host, port) in destinations.items()}
        self.broadcast(Kind.CONFIGURE, per_module=per_module, modules=modules, **settings)

    def trigger(self, modules: Collection[int], external: bool = False, **fields: Any) -> None:
        self.broadcast(Kind.EXT_TRIGGER if external else Kind.TRIGGER, modules=modules, **fields)

    def stop(self, modules: Collection[int]) -> int:
        acks = self.broadcast(Kind.STOP, modules=modules)
        return max((int(a.fields.get("frames_sent", 0)) for a in acks), default=0)

    def frames_sent(self, modules: Collection[int]) -> int:
        acks = self.broadcast(Kind.STATUS, modules=modules)
        return min((int(a.fields.get("frames_sent", 0)) for a in acks), default=0)

    def status(self) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for link in self.links:
            try:
                link.request(Kind.STATUS)
                out[link.address.module_id] = None
            except ModuleError as exc:
                out[link.address.module_id] = str(exc)
        return out

    def data_sources(self) -> dict[int, tuple[str, int]]:
        """Module id -> the (host, port) its data packets come from (modules that told it at CONFIGURE)."""
        return {link.address.module_id: link.data_source for link in self.links if link.data_source is not None}

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        for link in self.links:
            link.close()
