"""Errors of the control layer; each maps to one SIMPLON HTTP status via its gRPC code."""

from __future__ import annotations

import grpc


class ControlError(Exception):
    """Base class: a request the control layer refuses. `code` is the gRPC status sent to the base system."""

    code = grpc.StatusCode.INTERNAL


class ParameterNotFound(ControlError):
    """Unknown module, task, key or command (HTTP 404)."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, key: str):
        super().__init__(f"Parameter {key} does not exist")


class InvalidValue(ControlError):
    """Wrong JSON type, out of range, not allowed, read-only (HTTP 400)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class WrongState(ControlError):
    """A command or write that the current state does not allow (HTTP 400)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Timeout(ControlError):
    """Waiting for data timed out, e.g. a monitor image (HTTP 408)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
