"""The `stream` SIMPLON subsystem (spec/simplon-api.md §10)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.parameters import Command, Parameter, StatusParameter, Subsystem

if TYPE_CHECKING:
    from opendcu.app_detector.interfaces.stream.stream import Stream


#: longest appendix (JSON text): it rides along in the start message or in every image message
MAX_APPENDIX = 65536


class AppendixParameter(Parameter):
    """header_appendix / image_appendix: a string for V1, any JSON value for V2 (sent as `user_data`).

    Its value_type stays "string" (fastcs-eiger accepts only its scalar set on listed keys).
    """

    def validate(self, value: Any, limits: tuple[Any, Any] | None = None) -> Any:
        if "w" not in self.access_mode:
            raise InvalidValue(f"Parameter {self.key} is read-only")
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidValue(f"Parameter {self.key}: not a JSON value: {exc}") from None
        if len(text) > MAX_APPENDIX:
            raise InvalidValue(
                f"Parameter {self.key}: {len(text)} characters of JSON, at most {MAX_APPENDIX} "
                "(it travels with every message)"
            )
        return value


def build_stream_subsystem(stream: Stream) -> Subsystem:
    sub = Subsystem("stream")
    sub.add(
        Parameter("mode", "string", "disabled", allowed_values=["enabled", "disabled"]),
        Parameter("format", "string", "legacy", allowed_values=["legacy", "cbor"]),
        Parameter("header_detail", "string", "basic", allowed_values=["none", "basic", "all"]),
        AppendixParameter("header_appendix", "string", ""),
        AppendixParameter("image_appendix", "string", ""),
    )
    sub.add_status(
        StatusParameter(
            "state", "string", lambda: stream.state, allowed_values=["disabled", "ready", "acquire", "error"]
        ),
        # warning when the series' images were dropped (a consumer too slow or none connected)
        StatusParameter("dropped", "uint", lambda: stream.dropped, health=lambda n: "warning" if n else "normal"),
        StatusParameter("error", "string[]", lambda: list(stream.errors), listed=False),
    )
    sub.add_command(Command("initialize", lambda _arg: stream.initialize()))
    return sub
