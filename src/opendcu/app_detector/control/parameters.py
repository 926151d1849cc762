"""SIMPLON parameters: typed descriptors with validation, and the subsystems (detector, stream, filewriter,
monitor) that group them into config, status and command tasks.

A subsystem is declared next to the code it controls (e.g. `interfaces/filewriter/params.py`); the control
tree only composes them. Value types follow spec/simplon-api.md §3: the scalar types are the ones fastcs-eiger
accepts (float, int, bool, uint, string, string[]); arrays (pixel_mask, flatfield) are `uint[][]`/`float[][]`
and are not listed in `keys`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import numpy as np

from opendcu.app_detector.control.errors import InvalidValue, ParameterNotFound

#: called after a successful write with (subsystem, key, new value); returns further keys that changed
OnChange = Callable[["Subsystem", str, Any], list[str]]


def _type_error(key: str, value_type: str, value: Any) -> InvalidValue:
    return InvalidValue(f"Parameter {key}: expected a {value_type} value, got {type(value).__name__} {value!r:.60}")


def check_type(key: str, value_type: str, value: Any) -> Any:
    """Check a JSON value against a SIMPLON value_type; return it normalised (int for float keys -> float)."""
    if value_type == "bool":
        if isinstance(value, bool):
            return value
    elif value_type in ("uint", "int"):
        if isinstance(value, int) and not isinstance(value, bool):
            if value_type == "uint" and value < 0:
                raise InvalidValue(f"Parameter {key}: {value} is negative, expected an unsigned integer")
            return value
    elif value_type == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise InvalidValue(f"Parameter {key}: {value} is not a finite number")
            return float(value)
    elif value_type == "string":
        if isinstance(value, str):
            return value
    elif value_type == "string[]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    elif value_type == "float[]":
        if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    elif value_type in ("uint[][]", "float[][]"):
        if isinstance(value, np.ndarray) and value.ndim == 2:
            return value
    else:  # free-form JSON (stream appendices)
        return value
    raise _type_error(key, value_type, value)


@dataclass
class Parameter:
    """A config parameter: its SIMPLON descriptor fields and how to validate a new value."""

    key: str
    value_type: str
    default: Any
    access_mode: str = "rw"
    unit: str | None = None
    min: float | int | None = None
    max: float | int | None = None
    allowed_values: list[Any] | None = None
    #: listed in `…/config/keys` (fastcs-eiger ignores big arrays; real detectors omit some keys)
    listed: bool = True
    #: keys reported changed by a PUT besides the key itself and what `on_change` returns
    affects: tuple[str, ...] = ()
    on_change: OnChange | None = None
    #: extra validation beyond type/range (raise InvalidValue)
    check: Callable[[Any], None] | None = None
    #: shape check for arrays: returns the expected shape
    shape: Callable[[], tuple[int, ...]] | None = None

    def validate(self, value: Any) -> Any:
        """Return the value to store, or raise InvalidValue."""
        if "w" not in self.access_mode:
            raise InvalidValue(f"Parameter {self.key} is read-only")
        value = check_type(self.key, self.value_type, value)
        if self.min is not None and value < self.min:
            raise InvalidValue(f"Parameter {self.key}: {value} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise InvalidValue(f"Parameter {self.key}: {value} is above the maximum {self.max}")
        if self.allowed_values and value not in self.allowed_values:
            raise InvalidValue(f"Parameter {self.key}: {value!r} is not one of {self.allowed_values}")
        if self.shape is not None and tuple(value.shape) != self.shape():
            raise InvalidValue(f"Parameter {self.key}: shape {list(value.shape)} != expected {list(self.shape())}")
        if self.check is not None:
            self.check(value)
        return value


@dataclass
class StatusParameter:
    """A read-only status value computed when read."""

    key: str
    value_type: str
    read: Callable[[], Any]
    unit: str | None = None
    listed: bool = True
    allowed_values: list[Any] | None = None
    critical_limits: list[Any] | None = None
    critical_values: list[Any] | None = None


@dataclass
class Descriptor:
    """What a GET answers (transport-neutral; the gRPC service turns it into protobuf)."""

    value: Any
    value_type: str
    access_mode: str | None = None
    unit: str | None = None
    min: Any = None
    max: Any = None
    allowed_values: list[Any] | None = None
    time: str | None = None
    health: str | None = None
    critical_limits: list[Any] | None = None
    critical_values: list[Any] | None = None


@dataclass
class Command:
    """A command: `run(argument)` returns the answer (an int sequence id, a value, or None)."""

    name: str
    run: Callable[[Any], Any]
    listed: bool = True


@dataclass
class Subsystem:
    """One SIMPLON module (detector, stream, filewriter, monitor): config values, status readers, commands."""

    name: str
    config: dict[str, Parameter] = field(default_factory=dict)
    status: dict[str, StatusParameter] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    #: guards config access; returns a reason to refuse (e.g. detector not initialized) or None
    gate: Callable[[str, str], None] | None = None

    def add(self, *params: Parameter) -> None:
        for p in params:
            self.config[p.key] = p
            self.values[p.key] = p.default

    def add_status(self, *params: StatusParameter) -> None:
        for p in params:
            self.status[p.key] = p

    def add_command(self, *commands: Command) -> None:
        for c in commands:
            self.commands[c.name] = c

    def reset(self) -> None:
        """Restore every config value to its default."""
        for key, p in self.config.items():
            self.values[key] = p.default

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    # -- SIMPLON operations -----------------------------------------------------------------------------------
    def keys(self, task: str) -> list[str]:
        table = {"config": self.config, "status": self.status, "command": self.commands}.get(task)
        if table is None:
            raise ParameterNotFound(task)
        return [k for k, p in table.items() if p.listed]

    def describe(self, task: str, key: str) -> Descriptor:
        if self.gate:
            self.gate(task, key)
        if task == "config" and key in self.config:
            p = self.config[key]
            return Descriptor(
                value=self.values[key],
                value_type=p.value_type,
                access_mode=p.access_mode,
                unit=p.unit,
                min=p.min,
                max=p.max,
                allowed_values=p.allowed_values,
            )
        if task == "status" and key in self.status:
            s = self.status[key]
            return Descriptor(
                value=s.read(),
                value_type=s.value_type,
                access_mode="r",
                unit=s.unit,
                allowed_values=s.allowed_values,
                time=datetime.now().astimezone().isoformat(timespec="milliseconds"),
                health="normal",
                critical_limits=s.critical_limits,
                critical_values=s.critical_values,
            )
        raise ParameterNotFound(key)

    def set(self, key: str, value: Any) -> list[str]:
        """Validate and store one config value; return the SIMPLON change list (sorted, unique)."""
        if self.gate:
            self.gate("config", key)
        p = self.config.get(key)
        if p is None:
            raise ParameterNotFound(key)
        self.values[key] = p.validate(value)
        changed = {key, *p.affects}
        if p.on_change is not None:
            changed.update(p.on_change(self, key, self.values[key]))
        return sorted(changed)

    def reset_key(self, key: str) -> list[str]:
        """REST DELETE on a config key: restore its default."""
        if self.gate:
            self.gate("config", key)
        p = self.config.get(key)
        if p is None:
            raise ParameterNotFound(key)
        self.values[key] = p.default
        return [key]

    def command(self, name: str, argument: Any) -> Any:
        c = self.commands.get(name)
        if c is None:
            raise ParameterNotFound(name)
        return c.run(argument)
