"""Image codecs: each turns an image into the exact chunk bytes that files and streams carry."""

from opendcu.codecs.base import Hdf5Filter, ImageCodec
from opendcu.codecs.bslz4 import Bslz4Codec

CODECS: dict[str, ImageCodec] = {"bslz4": Bslz4Codec()}


def get_codec(name: str) -> ImageCodec:
    """The codec for a SIMPLON `compression` value."""
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unsupported compression {name!r}; supported: {', '.join(CODECS)}") from None


__all__ = ["CODECS", "Bslz4Codec", "Hdf5Filter", "ImageCodec", "get_codec"]
