"""gRPC contracts between the base system and its apps (generated code is committed; see scripts/gen_proto.py)."""
