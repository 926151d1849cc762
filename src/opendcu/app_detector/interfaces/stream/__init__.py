"""Stream interface: DECTRIS Stream V1 (legacy JSON multipart) and V2 (CBOR) over ZeroMQ PUSH sockets."""
