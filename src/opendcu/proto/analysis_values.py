"""Conversion between analysis result records (plain dicts, see interfaces/analysis) and analysis.proto, and from
the messages to JSON for the REST gateway (NaN -> null: JSON has no NaN; unset optional fields -> null)."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format

from opendcu.proto import analysis_pb2 as pb

_OPTIONAL = ("d_min", "background", "ice_score", "fraction_indexed", "rmsd")
_SUMMARY_OPTIONAL = ("hit_rate", "indexing_rate", "median_d_min", "median_latency_ms", "best_d_min", "median_n_spots")
_SCALARS = (
    "series_id",
    "image_id",
    "image_number",
    "phi_deg",
    "n_spots",
    "n_spots_no_ice",
    "n_spots_low_res",
    "total_intensity",
    "is_hit",
    "overloaded",
    "n_strong_pixels",
    "indexed",
    "n_indexed",
    "latency_ms",
    "analysis_ms",
    "images_received",
    "images_analysed",
    "images_skipped",
    "decimated",
    "indexing_skipped",
)


def result_to_proto(record: dict[str, Any], spots: bool = True, profile: bool = True) -> pb.ImageResult:
    msg = pb.ImageResult()
    for key in _SCALARS:
        value = record.get(key)
        if value is not None:
            setattr(msg, key, value)
    for key in _OPTIONAL:
        value = record.get(key)
        if value is not None and math.isfinite(value):
            setattr(msg, key, value)
    if record.get("unit_cell"):
        msg.unit_cell.extend(record["unit_cell"])
        msg.ub_matrix.extend(record["ub_matrix"])
    for name, value in (record.get("timings_ms") or {}).items():
        msg.timings_ms[name] = value
    if spots and record.get("spots"):
        s = record["spots"]
        msg.spots.CopyFrom(pb.Spots(x=s["x"], y=s["y"], intensity=s["intensity"], d=s["d"], npix=s["npix"]))
    if profile and record.get("profile"):
        p = record["profile"]
        cake = [v for row in p.get("cake", []) for v in row]
        msg.profile.CopyFrom(
            pb.RadialProfile(
                unit=p["unit"],
                radial=p["radial"],
                intensity=p["intensity"],
                azimuthal=p.get("azimuthal", []),
                cake=cake,
            )
        )
    return msg


def summary_to_proto(summary: dict[str, Any]) -> pb.SeriesSummary:
    msg = pb.SeriesSummary()
    for field in msg.DESCRIPTOR.fields:
        value = summary.get(field.name)
        if value is None:
            continue
        if field.is_repeated:
            getattr(msg, field.name).extend(value)
        else:
            setattr(msg, field.name, value)
    return msg


def _clean(value: Any) -> Any:
    """json_format writes non-finite doubles as strings; JSON clients want null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value in ("NaN", "Infinity", "-Infinity"):
        return None
    return value


def message_to_json(msg, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    out = json_format.MessageToDict(
        msg, always_print_fields_with_no_presence=True, preserving_proto_field_name=True, unquote_int64_if_possible=True
    )
    for key in optional:
        out.setdefault(key, None)
    return _clean(out)


def result_to_json(msg: pb.ImageResult) -> dict[str, Any]:
    out = message_to_json(msg, _OPTIONAL)
    if not msg.unit_cell:
        out["unit_cell"] = out["ub_matrix"] = None
    if not msg.HasField("spots"):
        out.pop("spots", None)
    if not msg.HasField("profile"):
        out.pop("profile", None)
    elif not msg.profile.cake:
        out["profile"].pop("cake", None)
        out["profile"].pop("azimuthal", None)
    return out


def summary_to_json(msg: pb.SeriesSummary) -> dict[str, Any]:
    out = message_to_json(msg, _SUMMARY_OPTIONAL)
    out["found_cell"] = out.get("found_cell") or None
    return out
