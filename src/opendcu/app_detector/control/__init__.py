"""Control service of app-detector: SIMPLON parameters, the state machine and series orchestration (gRPC)."""
