from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NdArray(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[str]] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, items: _Optional[_Iterable[float]] = ...) -> None: ...

class IntList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, items: _Optional[_Iterable[int]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("null", "bool_value", "int_value", "uint_value", "float_value", "string_value", "string_list", "float_list", "int_list", "array", "json")
    NULL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    UINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_FIELD_NUMBER: _ClassVar[int]
    FLOAT_LIST_FIELD_NUMBER: _ClassVar[int]
    INT_LIST_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    null: bool
    bool_value: bool
    int_value: int
    uint_value: int
    float_value: float
    string_value: str
    string_list: StringList
    float_list: FloatList
    int_list: IntList
    array: NdArray
    json: str
    def __init__(self, null: _Optional[bool] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., uint_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., string_list: _Optional[_Union[StringList, _Mapping]] = ..., float_list: _Optional[_Union[FloatList, _Mapping]] = ..., int_list: _Optional[_Union[IntList, _Mapping]] = ..., array: _Optional[_Union[NdArray, _Mapping]] = ..., json: _Optional[str] = ...) -> None: ...

class Descriptor(_message.Message):
    __slots__ = ("value", "value_type", "access_mode", "min", "max", "has_allowed_values", "allowed_values", "unit", "time", "health", "has_critical_limits", "critical_limits", "has_critical_values", "critical_values")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_MODE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    HAS_ALLOWED_VALUES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_VALUES_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HAS_CRITICAL_LIMITS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_LIMITS_FIELD_NUMBER: _ClassVar[int]
    HAS_CRITICAL_VALUES_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_VALUES_FIELD_NUMBER: _ClassVar[int]
    value: Value
    value_type: str
    access_mode: str
    min: Value
    max: Value
    has_allowed_values: bool
    allowed_values: _containers.RepeatedCompositeFieldContainer[Value]
    unit: str
    time: str
    health: str
    has_critical_limits: bool
    critical_limits: _containers.RepeatedCompositeFieldContainer[Value]
    has_critical_values: bool
    critical_values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., value_type: _Optional[str] = ..., access_mode: _Optional[str] = ..., min: _Optional[_Union[Value, _Mapping]] = ..., max: _Optional[_Union[Value, _Mapping]] = ..., has_allowed_values: _Optional[bool] = ..., allowed_values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., unit: _Optional[str] = ..., time: _Optional[str] = ..., health: _Optional[str] = ..., has_critical_limits: _Optional[bool] = ..., critical_limits: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., has_critical_values: _Optional[bool] = ..., critical_values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ParameterRef(_message.Message):
    __slots__ = ("api_version", "module", "task", "key")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    module: str
    task: str
    key: str
    def __init__(self, api_version: _Optional[str] = ..., module: _Optional[str] = ..., task: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class SetParameterRequest(_message.Message):
    __slots__ = ("ref", "value")
    REF_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ref: ParameterRef
    value: Value
    def __init__(self, ref: _Optional[_Union[ParameterRef, _Mapping]] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class SetParametersRequest(_message.Message):
    __slots__ = ("api_version", "module", "keys", "values")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    module: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, api_version: _Optional[str] = ..., module: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ChangedKeys(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("api_version", "module", "task")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    module: str
    task: str
    def __init__(self, api_version: _Optional[str] = ..., module: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class KeyList(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CommandRequest(_message.Message):
    __slots__ = ("api_version", "module", "command", "argument")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGUMENT_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    module: str
    command: str
    argument: Value
    def __init__(self, api_version: _Optional[str] = ..., module: _Optional[str] = ..., command: _Optional[str] = ..., argument: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class CommandReply(_message.Message):
    __slots__ = ("sequence_id", "result")
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    sequence_id: int
    result: Value
    def __init__(self, sequence_id: _Optional[int] = ..., result: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
