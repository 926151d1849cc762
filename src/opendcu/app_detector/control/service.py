"""The app-detector gRPC control service: SIMPLON parameters and commands of every subsystem it owns."""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc

from opendcu.proto import control_pb2 as pb
from opendcu.proto import control_pb2_grpc
from opendcu.proto.values import from_proto, to_proto
from opendcu.simplon.descriptors import SUPPORTED_VERSIONS, descriptor_to_proto
from opendcu.simplon.errors import ControlError, InvalidValue, ParameterNotFound
from opendcu.simplon.parameters import Subsystem

log = logging.getLogger(__name__)


class ControlService(control_pb2_grpc.ControlServicer):
    """Routes each call to the subsystem named by its `module`."""

    def __init__(self, subsystems: dict[str, Subsystem]):
        self.subsystems = subsystems
        # config writes are serialised; commands take the acquisition controller's own lock
        self._write_lock = threading.Lock()

    def _subsystem(self, api_version: str, module: str) -> Subsystem:
        if api_version not in SUPPORTED_VERSIONS:
            raise ParameterNotFound(f"api version {api_version}")
        try:
            return self.subsystems[module]
        except KeyError:
            raise ParameterNotFound(module) from None

    def _run(self, context: grpc.ServicerContext, fn, *args: Any):
        try:
            return fn(*args)
        except ControlError as exc:
            context.abort(exc.code, str(exc))
        except Exception as exc:  # a bug must not kill the service: report it as an internal error
            log.exception("control call failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")

    def GetParameter(self, request: pb.ParameterRef, context) -> pb.Descriptor:
        def get() -> pb.Descriptor:
            sub = self._subsystem(request.api_version, request.module)
            return descriptor_to_proto(sub.describe(request.task, request.key))

        return self._run(context, get)

    def SetParameter(self, request: pb.SetParameterRequest, context) -> pb.ChangedKeys:
        def put() -> pb.ChangedKeys:
            ref = request.ref
            sub = self._subsystem(ref.api_version, ref.module)
            self._check_writable(ref.task, ref.key)
            with self._write_lock:
                return pb.ChangedKeys(keys=sub.set(ref.key, from_proto(request.value)))

        return self._run(context, put)

    def SetParameters(self, request: pb.SetParametersRequest, context) -> pb.ChangedKeys:
        def put_many() -> pb.ChangedKeys:
            sub = self._subsystem(request.api_version, request.module)
            if len(request.keys) != len(request.values):
                raise InvalidValue("SetParameters: keys and values differ in length")
            items = [(k, from_proto(v)) for k, v in zip(request.keys, request.values, strict=False)]
            with self._write_lock:
                return pb.ChangedKeys(keys=sub.set_many(items))

        return self._run(context, put_many)

    @staticmethod
    def _check_writable(task: str, key: str) -> None:
        if task == "status":
            raise InvalidValue(f"Parameter {key} is a status value and read-only")
        if task != "config":
            raise ParameterNotFound(key)

    def ListModules(self, request: pb.ListModulesRequest, context) -> pb.KeyList:
        return pb.KeyList(keys=list(self.subsystems))

    def ResetParameter(self, request: pb.ParameterRef, context) -> pb.ChangedKeys:
        def reset() -> pb.ChangedKeys:
            sub = self._subsystem(request.api_version, request.module)
            if request.task != "config":
                raise ParameterNotFound(request.key)
            with self._write_lock:
                return pb.ChangedKeys(keys=sub.reset_key(request.key))

        return self._run(context, reset)

    def ListKeys(self, request: pb.ListKeysRequest, context) -> pb.KeyList:
        return self._run(
            context,
            lambda: pb.KeyList(
                keys=self._subsystem(request.api_version, request.module).keys(request.task, request.api_version)
            ),
        )

    def Command(self, request: pb.CommandRequest, context) -> pb.CommandReply:
        def command() -> pb.CommandReply:
            sub = self._subsystem(request.api_version, request.module)
            argument = from_proto(request.argument) if request.HasField("argument") else None
            result = sub.command(request.command, argument, request.api_version)
            reply = pb.CommandReply()
            if isinstance(result, int) and not isinstance(result, bool):
                reply.sequence_id = result
            elif result is not None:
                reply.result.CopyFrom(to_proto(result))
            return reply

        return self._run(context, command)
