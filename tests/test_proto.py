"""The committed gRPC/protobuf modules are exactly what the .proto files generate."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_generated_code_matches_proto(tmp_path: Path):
    subprocess.check_call([sys.executable, str(REPO / "scripts" / "gen_proto.py"), str(tmp_path)])
    generated = sorted((tmp_path / "opendcu" / "proto").glob("*_pb2*"))
    assert generated
    for path in generated:
        committed = REPO / "src" / "opendcu" / "proto" / path.name
        assert committed.read_text() == path.read_text(), f"{path.name} is stale: run scripts/gen_proto.py"


def test_value_conversion_roundtrip():
    import numpy as np

    from opendcu.proto.values import from_proto, to_proto

    for value, vt in [
        (None, None),
        (True, "bool"),
        (5, "uint"),
        (-5, "int"),
        (2, "float"),
        (0.5, "float"),
        ("x", "string"),
        (["a", "b"], "string[]"),
        ([1.5, 2.0], "float[]"),
        ({"a": [1, None]}, None),
    ]:
        back = from_proto(to_proto(value, vt))
        assert back == (float(value) if vt == "float" else value) and type(back) is type(
            float(value) if vt == "float" else value
        )
    arr = np.arange(12, dtype="<u4").reshape(3, 4)
    np.testing.assert_array_equal(from_proto(to_proto(arr)), arr)
    assert importlib.util.find_spec("opendcu.proto.control_pb2_grpc") is not None
