"""The base system's gRPC clients of its apps (async, for the REST gateway)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from opendcu.proto import control_pb2 as pb
from opendcu.proto import control_pb2_grpc
from opendcu.proto.values import to_proto

MAX_MESSAGE = 256 << 20


class ControlClient:
    """Async client of one app's Control service."""

    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(
            address,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self.stub = control_pb2_grpc.ControlStub(self.channel)

    async def get(self, version: str, module: str, task: str, key: str) -> pb.Descriptor:
        return await self.stub.GetParameter(pb.ParameterRef(api_version=version, module=module, task=task, key=key))

    async def set(self, version: str, module: str, key: str, value: Any) -> list[str]:
        ref = pb.ParameterRef(api_version=version, module=module, task="config", key=key)
        reply = await self.stub.SetParameter(pb.SetParameterRequest(ref=ref, value=to_proto(value)))
        return list(reply.keys)

    async def reset(self, version: str, module: str, key: str) -> list[str]:
        ref = pb.ParameterRef(api_version=version, module=module, task="config", key=key)
        return list((await self.stub.ResetParameter(ref)).keys)

    async def keys(self, version: str, module: str, task: str) -> list[str]:
        return list((await self.stub.ListKeys(pb.ListKeysRequest(api_version=version, module=module, task=task))).keys)

    async def command(self, version: str, module: str, command: str, argument: Any = None) -> pb.CommandReply:
        request = pb.CommandRequest(api_version=version, module=module, command=command)
        if argument is not None:
            request.argument.CopyFrom(to_proto(argument))
        return await self.stub.Command(request)

    async def close(self) -> None:
        await self.channel.close()


@dataclass
class AppDirectory:
    """Which app serves which SIMPLON module."""

    detector_app: ControlClient

    def for_module(self, module: str) -> ControlClient | None:
        if module in ("detector", "filewriter", "stream", "monitor"):
            return self.detector_app
        return None
