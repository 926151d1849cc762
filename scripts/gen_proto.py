#!/usr/bin/env python3
"""Regenerate the protobuf/gRPC Python modules from src/opendcu/proto/*.proto (needs grpcio-tools).

The generated files are committed; tests/test_proto.py checks that they match the .proto sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

SRC = Path(__file__).resolve().parent.parent / "src"


def generate(out_dir: Path = SRC) -> None:
    protos = sorted(str(p.relative_to(SRC)) for p in (SRC / "opendcu" / "proto").glob("*.proto"))
    args = [
        "protoc",
        f"-I{SRC}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
