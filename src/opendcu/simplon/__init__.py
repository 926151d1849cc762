"""SIMPLON, the leaf both sides of the gRPC boundary share: the parameter model (`parameters`: typed keys,
validation, change lists, all-or-nothing writes), its errors (`errors`, each with its gRPC code and so its HTTP
status), the descriptor <-> protobuf conversion and API versions (`descriptors`), and the filewriter's naming
rules for data files (`paths`), which the base system applies when it serves them.

It imports nothing of opendcu but `proto`, so that base (the REST gateway) and the apps can both use it.
"""
