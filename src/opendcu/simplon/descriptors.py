"""Parameter descriptors as protobuf messages, and the SIMPLON API versions served."""

from __future__ import annotations

from opendcu.proto import control_pb2 as pb
from opendcu.proto.values import to_proto
from opendcu.simplon.parameters import Descriptor

SUPPORTED_VERSIONS = ("1.6.0", "1.8.0")


def descriptor_to_proto(d: Descriptor) -> pb.Descriptor:
    msg = pb.Descriptor(value=to_proto(d.value, d.value_type), value_type=d.value_type)
    if d.access_mode is not None:
        msg.access_mode = d.access_mode
    if d.unit is not None:
        msg.unit = d.unit
    if d.min is not None:
        msg.min.CopyFrom(to_proto(d.min, d.value_type))
    if d.max is not None:
        msg.max.CopyFrom(to_proto(d.max, d.value_type))
    if d.allowed_values is not None:
        msg.has_allowed_values = True
        msg.allowed_values.extend(to_proto(v) for v in d.allowed_values)
    if d.time is not None:
        msg.time = d.time
    if d.health is not None:
        msg.health = d.health
    if d.critical_limits is not None:
        msg.has_critical_limits = True
        msg.critical_limits.extend(to_proto(v) for v in d.critical_limits)
    if d.critical_values is not None:
        msg.has_critical_values = True
        msg.critical_values.extend(to_proto(v) for v in d.critical_values)
    return msg
