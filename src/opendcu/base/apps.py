"""The base system's clients of its apps (async, for the REST gateway), and which app serves which module.

Every app speaks the Control contract (proto/control.proto); the REST layer only asks the directory for the
app of a module, so a new module of any app is served without touching the routes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from opendcu.proto import control_pb2 as pb
from opendcu.proto import control_pb2_grpc
from opendcu.proto.values import to_proto

MAX_MESSAGE = 256 << 20


class AppError(Exception):
    """A request an in-process app refused; `code` is the gRPC status the REST layer maps to HTTP."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


#: how long a call waits for an app that is (re)starting before the gateway answers 503
UNAVAILABLE_PATIENCE = 30.0


class ControlApp(Protocol):
    """What the REST gateway needs of an app (gRPC client or in-process)."""

    async def get(self, version: str, module: str, task: str, key: str) -> pb.Descriptor: ...
    async def set(self, version: str, module: str, key: str, value: Any) -> list[str]: ...
    async def set_many(self, version: str, module: str, items: list[tuple[str, Any]]) -> list[str]: ...
    async def reset(self, version: str, module: str, key: str) -> list[str]: ...
    async def keys(self, version: str, module: str, task: str) -> list[str]: ...
    async def command(self, version: str, module: str, command: str, argument: Any = None) -> pb.CommandReply: ...
    async def modules(self) -> list[str]: ...


class ControlClient:
    """Async client of one app's Control service. Calls wait out a restart of the app (UNAVAILABLE)."""

    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(
            address,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self.stub = control_pb2_grpc.ControlStub(self.channel)

    async def _call(self, rpc, request):
        deadline = time.monotonic() + UNAVAILABLE_PATIENCE
        while True:
            try:
                return await rpc(request)
            except grpc.aio.AioRpcError as exc:
                # UNAVAILABLE: the request never reached the app (connection refused), so retrying is safe
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def get(self, version: str, module: str, task: str, key: str) -> pb.Descriptor:
        return await self._call(
            self.stub.GetParameter, pb.ParameterRef(api_version=version, module=module, task=task, key=key)
        )

    async def set(self, version: str, module: str, key: str, value: Any) -> list[str]:
        ref = pb.ParameterRef(api_version=version, module=module, task="config", key=key)
        reply = await self._call(self.stub.SetParameter, pb.SetParameterRequest(ref=ref, value=to_proto(value)))
        return list(reply.keys)

    async def set_many(self, version: str, module: str, items: list[tuple[str, Any]]) -> list[str]:
        request = pb.SetParametersRequest(
            api_version=version, module=module, keys=[k for k, _ in items], values=[to_proto(v) for _, v in items]
        )
        return list((await self._call(self.stub.SetParameters, request)).keys)

    async def reset(self, version: str, module: str, key: str) -> list[str]:
        ref = pb.ParameterRef(api_version=version, module=module, task="config", key=key)
        return list((await self._call(self.stub.ResetParameter, ref)).keys)

    async def keys(self, version: str, module: str, task: str) -> list[str]:
        request = pb.ListKeysRequest(api_version=version, module=module, task=task)
        return list((await self._call(self.stub.ListKeys, request)).keys)

    async def command(self, version: str, module: str, command: str, argument: Any = None) -> pb.CommandReply:
        request = pb.CommandRequest(api_version=version, module=module, command=command)
        if argument is not None:
            request.argument.CopyFrom(to_proto(argument))
        return await self._call(self.stub.Command, request)

    async def modules(self) -> list[str]:
        return list((await self._call(self.stub.ListModules, pb.ListModulesRequest())).keys)

    async def close(self) -> None:
        await self.channel.close()


@dataclass
class AppDirectory:
    """Which app serves which module: learnt from the apps themselves (ListModules) on first use."""

    apps: list[ControlApp]
    _modules: dict[str, ControlApp] = field(default_factory=dict)

    async def for_module(self, module: str) -> ControlApp | None:
        if module not in self._modules:
            await self.refresh()
        return self._modules.get(module)

    async def refresh(self) -> None:
        for app in self.apps:
            try:
                for name in await app.modules():
                    self._modules[name] = app
            except grpc.aio.AioRpcError:
                pass  # an app that is down serves nothing for now; asked again on the next unknown module

    async def module_names(self) -> list[str]:
        await self.refresh()
        return sorted(self._modules)
