"""SIMPLON parameters: typed descriptors with validation, and the subsystems (detector, stream, filewriter,
monitor, ...) that group them into config, status and command tasks.

A subsystem is declared next to the code it controls (e.g. `interfaces/filewriter/params.py`); the control
tree only composes them. Value types follow spec/simplon-api.md §3: the scalar types are the ones fastcs-eiger
accepts (float, int, bool, uint, string, string[]). Keys of any other type (arrays such as pixel_mask,
vectors such as detector_orientation) are served but not listed in `keys`, because fastcs-eiger rejects every
listed key whose value_type it does not know.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from opendcu.simplon.errors import InvalidValue, ParameterNotFound

#: called after a successful write with (subsystem, key, new value); returns further keys that changed
OnChange = Callable[["Subsystem", str, Any], Iterable[str]]

#: value types fastcs-eiger (the strictest client) accepts for a key listed in `keys`
LISTABLE_TYPES = frozenset({"float", "int", "bool", "uint", "string", "datetime", "State", "string[]"})
ARRAY_TYPES = frozenset({"uint[][]", "float[][]"})
#: the change-list name a real EIGER2 reports for threshold/difference/mode (fastcs-eiger maps it back)
DIFFERENCE_MODE_QUIRK = "difference_mode"


def _type_error(key: str, value_type: str, value: Any) -> InvalidValue:
    return InvalidValue(f"Parameter {key}: expected a {value_type} value, got {type(value).__name__} {value!r:.60}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_array(key: str, value_type: str, value: Any) -> np.ndarray:
    """A 2-D array for a uint[][] (-> uint32) or float[][] (-> float32) key, without silent wrap-around."""
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise _type_error(key, value_type, value)
    if value_type == "uint[][]":
        if value.dtype.kind == "u" or (value.dtype.kind == "i" and (value.size == 0 or value.min() >= 0)):
            if value.size and int(value.max()) > 0xFFFFFFFF:
                raise InvalidValue(f"Parameter {key}: values exceed 32 bits")
            return np.ascontiguousarray(value, dtype=np.uint32)
        raise InvalidValue(f"Parameter {key}: expected unsigned integers, got an array of {value.dtype}")
    if value.dtype.kind not in "uif":
        raise InvalidValue(f"Parameter {key}: expected numbers, got an array of {value.dtype}")
    out = np.ascontiguousarray(value, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InvalidValue(f"Parameter {key}: the array contains NaN or infinite values")
    return out


#: longest string value (and longest string list) a key takes
MAX_STRING = 4096


def _check_length(key: str, value: str | list) -> None:
    if len(value) > MAX_STRING:
        what = "characters" if isinstance(value, str) else "items"
        raise InvalidValue(f"Parameter {key}: {len(value)} {what}, at most {MAX_STRING} are allowed")


def check_type(key: str, value_type: str, value: Any) -> Any:
    """Check a JSON value against a SIMPLON value_type; return it normalised (int for float keys -> float)."""
    if value_type == "bool":
        if isinstance(value, bool):
            return value
    elif value_type in ("uint", "int"):
        if isinstance(value, int) and not isinstance(value, bool):
            if value_type == "uint" and value < 0:
                raise InvalidValue(f"Parameter {key}: {value} is negative, expected an unsigned integer")
            if not -(1 << 63) <= value < (1 << 64):
                raise InvalidValue(f"Parameter {key}: {value:.3e} does not fit 64 bits")
            return value
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return check_type(key, value_type, int(value))  # 5.0 is an integer in JSON's number model
    elif value_type == "float":
        if _is_number(value):
            if not math.isfinite(value):
                raise InvalidValue(f"Parameter {key}: {value} is not a finite number")
            return float(value)
    elif value_type in ("string", "datetime"):
        if isinstance(value, str):
            _check_length(key, value)
            return value
    elif value_type == "string[]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            _check_length(key, value)
            for v in value:
                _check_length(key, v)
            return value
    elif value_type == "float[]":
        if isinstance(value, list) and all(_is_number(v) and math.isfinite(v) for v in value):
            return [float(v) for v in value]
    elif value_type in ARRAY_TYPES:
        return _check_array(key, value_type, value)
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
    #: listed in `…/config/keys`; default: only the value types fastcs-eiger accepts (see module doc)
    listed: bool | None = None
    #: keys reported changed by a PUT besides the key itself and what `on_change` returns
    affects: tuple[str, ...] = ()
    on_change: OnChange | None = None
    #: extra validation beyond type/range (raise InvalidValue)
    check: Callable[[Any], None] | None = None
    #: shape check for arrays: returns the expected shape
    shape: Callable[[], tuple[int, ...]] | None = None
    #: a value derived from other keys on every read (e.g. number_of_excluded_pixels); None = stored value
    compute: Callable[[Subsystem], Any] | None = None
    #: limits that depend on other keys (e.g. threshold energy vs photon energy): returns (min, max)
    limits: Callable[[Subsystem], tuple[Any, Any]] | None = None

    def __post_init__(self) -> None:
        if self.listed is None:
            self.listed = self.value_type in LISTABLE_TYPES

    def validate(self, value: Any, limits: tuple[Any, Any] | None = None) -> Any:
        """Return the value to store, or raise InvalidValue."""
        if "w" not in self.access_mode:
            raise InvalidValue(f"Parameter {self.key} is read-only")
        value = check_type(self.key, self.value_type, value)
        low, high = limits if limits is not None else (self.min, self.max)
        if low is not None and value < low:
            raise InvalidValue(f"Parameter {self.key}: {value} is below the minimum {low}")
        if high is not None and value > high:
            raise InvalidValue(f"Parameter {self.key}: {value} is above the maximum {high}")
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
    #: the GET object's `state` from the value (normal, warning, error), e.g. of a loss counter; None:
    #: from critical_limits / critical_values
    health: Callable[[Any], str] | None = None


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
    #: API versions that know this command (None: all)
    versions: tuple[str, ...] | None = None


def _health(value: Any, s: StatusParameter) -> str:
    """SIMPLON status health: `critical` outside critical_limits or at a critical value, else `normal`; or what
    the key's own `health` says (warning / error when something was lost)."""
    if s.health is not None:
        return s.health(value)
    if s.critical_values and value in s.critical_values:
        return "critical"
    if s.critical_limits and _is_number(value):
        low, high = s.critical_limits
        if (low is not None and value < low) or (high is not None and value > high):
            return "critical"
    return "normal"


@dataclass
class Subsystem:
    """One SIMPLON module (detector, stream, filewriter, monitor): config values, status readers, commands."""

    name: str
    config: dict[str, Parameter] = field(default_factory=dict)
    status: dict[str, StatusParameter] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    #: guards access; raises (e.g. ParameterNotFound before initialize) or returns None
    gate: Callable[[str, str], None] | None = None
    #: other names of a config key (threshold/1/energy -> threshold_energy)
    aliases: dict[str, str] = field(default_factory=dict)
    #: what DELETE restores for an array key: the calibration loaded at initialize (default: Parameter.default)
    factory: dict[str, Any] = field(default_factory=dict)
    #: called once per write with the config names written, after they are stored and before the write counts:
    #: if it raises, the whole write is undone (app-detector reloads the flatfield of new energies here)
    after_write: Callable[[Subsystem, set[str]], None] | None = None

    def add(self, *params: Parameter) -> None:
        for p in params:
            if p.key in self.config or p.key in self.aliases:
                raise ValueError(f"{self.name}: config key {p.key} is declared twice")
            self.config[p.key] = p
            self.values[p.key] = p.default

    def add_status(self, *params: StatusParameter) -> None:
        for p in params:
            if p.key in self.status:
                raise ValueError(f"{self.name}: status key {p.key} is declared twice")
            self.status[p.key] = p

    def add_command(self, *commands: Command) -> None:
        for c in commands:
            self.commands[c.name] = c

    def alias(self, name: str, key: str) -> None:
        """Serve config key `key` under a second name as well (both appear in change lists)."""
        if name in self.config:
            raise ValueError(f"{self.name}: alias {name} shadows a config key")
        self.aliases[name] = key

    def reset(self) -> None:
        """Restore every config value to its default."""
        for key, p in self.config.items():
            self.values[key] = p.default
        self.factory.clear()

    def __getitem__(self, key: str) -> Any:
        key = self.aliases.get(key, key)
        p = self.config.get(key)
        if p is not None and p.compute is not None:
            return p.compute(self)
        return self.values[key]

    def _resolve(self, task: str, key: str) -> str:
        if self.gate:
            self.gate(task, key)
        return self.aliases.get(key, key) if task == "config" else key

    # -- SIMPLON operations -----------------------------------------------------------------------------------
    def keys(self, task: str, version: str = "1.8.0") -> list[str]:
        if self.gate:
            try:
                self.gate(task, "keys")
            except ParameterNotFound:  # before initialize only status/state exists
                return ["state"] if task == "status" and "state" in self.status else []
        if task == "config":
            listed = [k for k, p in self.config.items() if p.listed]
            return listed + [a for a, k in self.aliases.items() if self.config[k].listed]
        if task == "status":
            return [k for k, p in self.status.items() if p.listed]
        if task == "command":
            return [k for k, c in self.commands.items() if c.listed and (c.versions is None or version in c.versions)]
        raise ParameterNotFound(task)

    def describe(self, task: str, key: str) -> Descriptor:
        if task == "config":
            name = self._resolve(task, key)
            p = self.config.get(name)
            if p is None:
                raise ParameterNotFound(key)
            low, high = p.limits(self) if p.limits is not None else (p.min, p.max)
            return Descriptor(
                value=self[name],
                value_type=p.value_type,
                access_mode=p.access_mode,
                unit=p.unit,
                min=low,
                max=high,
                allowed_values=p.allowed_values,
            )
        if task == "status":
            self._resolve(task, key)
            s = self.status.get(key)
            if s is None:
                raise ParameterNotFound(key)
            value = s.read()
            return Descriptor(
                value=value,
                value_type=s.value_type,
                access_mode="r",
                unit=s.unit,
                allowed_values=s.allowed_values,
                time=datetime.now().astimezone().isoformat(timespec="milliseconds"),
                health=_health(value, s),
                critical_limits=s.critical_limits,
                critical_values=s.critical_values,
            )
        raise ParameterNotFound(key)

    def set(self, key: str, value: Any) -> list[str]:
        """Validate and store one config value, all or nothing (with what its `on_change` moves); return the
        SIMPLON change list (sorted, unique, valid keys)."""
        return self.set_many([(key, value)])

    def _set(self, key: str, value: Any) -> tuple[str, list[str]]:
        """Store one value and run its `on_change`: (its config name, its change list)."""
        name = self._resolve("config", key)
        p = self.config.get(name)
        if p is None:
            raise ParameterNotFound(key)
        self.values[name] = p.validate(value, p.limits(self) if p.limits is not None else None)
        changed = {key, name, *p.affects}
        if p.on_change is not None:
            changed.update(p.on_change(self, name, self.values[name]))
        return name, self._change_list(changed)

    def set_many(self, items: list[tuple[str, Any]]) -> list[str]:
        """A multi-key PUT on the task root: applied in order, all or nothing; the union of change lists."""
        saved, saved_factory = dict(self.values), dict(self.factory)  # on_change may reload a calibration
        changed: set[str] = set()
        written: set[str] = set()
        try:
            for key, value in items:
                name, changes = self._set(key, value)
                written.add(name)
                changed.update(changes)
            if self.after_write is not None:
                self.after_write(self, written)
        except Exception as exc:
            self.values.clear()
            self.values.update(saved)
            self.factory.clear()
            self.factory.update(saved_factory)
            if isinstance(exc, InvalidValue) and len(items) > 1:
                raise InvalidValue(f"{exc} (no key of this request was changed)") from None
            raise
        return sorted(changed)

    def _change_list(self, changed: set[str]) -> list[str]:
        # only names a client can read back; aliases follow their key
        out = {k for k in changed if k in self.config or k == DIFFERENCE_MODE_QUIRK}
        out.update(a for a, k in self.aliases.items() if k in out)
        return sorted(out)

    def reset_key(self, key: str) -> list[str]:
        """REST DELETE on an array key (pixel_mask, flatfield): restore the calibrated default."""
        name = self._resolve("config", key)
        p = self.config.get(name)
        if p is None:
            raise ParameterNotFound(key)
        if p.value_type not in ARRAY_TYPES or "w" not in p.access_mode:
            raise InvalidValue(f"Parameter {key} cannot be deleted (only custom pixel masks and flatfields can)")
        self.values[name] = self.factory.get(name, p.default)
        return self._change_list({name})

    def command(self, name: str, argument: Any, version: str = "1.8.0") -> Any:
        c = self.commands.get(name)
        if c is None or (c.versions is not None and version not in c.versions):
            raise ParameterNotFound(name)
        return c.run(argument)
