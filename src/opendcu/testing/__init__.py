"""Helpers for tests and benchmarks: simulated detector images through the real pipeline (`simulate`) and plain
numpy reference implementations to compare the compiled code with (`reference`).

Runtime code may not import this package (an import-linter contract in pyproject.toml); it sits above every
layer, so it may use any of them.
"""
