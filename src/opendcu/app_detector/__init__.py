"""app-detector: the data path (DAQ, pipeline, ImageMux, interfaces) and its gRPC control service."""
