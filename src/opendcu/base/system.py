"""The `system` SIMPLON module (spec/simplon-api.md §13), served by the base system itself.

`command/restart` restarts the SIMPLON service: the app manager restarts app-detector, which comes back in
state `na` (blocking, as on DECTRIS firmware since 2020.1). The clock keys describe the DCU host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from opendcu import __version__
from opendcu.base.apps import AppError
from opendcu.proto import control_pb2 as pb
from opendcu.proto.values import to_proto
from opendcu.simplon.descriptors import SUPPORTED_VERSIONS, descriptor_to_proto
from opendcu.simplon.errors import ControlError
from opendcu.simplon.parameters import Command, Parameter, StatusParameter, Subsystem


def _refused(error: ControlError) -> AppError:
    return AppError(error.code, str(error))


def _computed(key: str, read: Callable[[], str]) -> Parameter:
    return Parameter(key, "string", "", access_mode="r", compute=lambda _s: read())


def build_system_subsystem(restart: Callable[[], None]) -> Subsystem:
    system = Subsystem("system")
    system.add(
        _computed("datetime/date", lambda: datetime.now().astimezone().date().isoformat()),
        _computed("datetime/time", lambda: datetime.now().astimezone().time().isoformat(timespec="seconds")),
        _computed("datetime/timezone", lambda: time.tzname[time.localtime().tm_isdst > 0]),
        Parameter("system_info/service_tag", "string", f"opendcu-{__version__}", access_mode="r"),
    )
    system.add_status(
        StatusParameter("time", "string", lambda: datetime.now().astimezone().isoformat(timespec="seconds"))
    )
    system.add_command(Command("restart", lambda _a: restart()))
    return system


class SystemApp:
    """The system module as an in-process app with the same interface as a gRPC ControlClient."""

    def __init__(self, restart: Callable[[], None]):
        self.subsystem = build_system_subsystem(restart)

    @staticmethod
    def _check(version: str, module: str) -> None:
        from opendcu.simplon.errors import ParameterNotFound

        if version not in SUPPORTED_VERSIONS:
            raise _refused(ParameterNotFound(f"api version {version}"))
        if module != "system":
            raise _refused(ParameterNotFound(module))

    async def _run(self, version: str, module: str, fn: Callable[..., Any], *args: Any) -> Any:
        self._check(version, module)
        try:
            return fn(*args)
        except ControlError as exc:
            raise _refused(exc) from None

    async def get(self, version: str, module: str, task: str, key: str) -> pb.Descriptor:
        return descriptor_to_proto(await self._run(version, module, self.subsystem.describe, task, key))

    async def set(self, version: str, module: str, key: str, value: Any) -> list[str]:
        return await self._run(version, module, self.subsystem.set, key, value)

    async def set_many(self, version: str, module: str, items: list[tuple[str, Any]]) -> list[str]:
        return await self._run(version, module, self.subsystem.set_many, items)

    async def reset(self, version: str, module: str, key: str) -> list[str]:
        return await self._run(version, module, self.subsystem.reset_key, key)

    async def keys(self, version: str, module: str, task: str) -> list[str]:
        return await self._run(version, module, self.subsystem.keys, task, version)

    async def command(self, version: str, module: str, command: str, argument: Any = None) -> pb.CommandReply:
        self._check(version, module)
        if command not in self.subsystem.commands:
            await self._run(version, module, self.subsystem.command, command, argument, version)
        # restart blocks for seconds: keep the event loop serving other requests meanwhile
        result = await asyncio.to_thread(self._command, command, argument, version)
        reply = pb.CommandReply()
        if result is not None:
            reply.result.CopyFrom(to_proto(result))
        return reply

    def _command(self, command: str, argument: Any, version: str) -> Any:
        try:
            return self.subsystem.command(command, argument, version)
        except ControlError as exc:
            raise _refused(exc) from None

    async def modules(self) -> list[str]:
        return ["system"]
