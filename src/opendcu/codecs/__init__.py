"""Image codecs: each turns an image into the exact chunk bytes that files and streams carry.

Image codecs (SIMPLON `compression`): bslz4, lz4, none. Array codecs applied before them: 2x2 binning and the
8-bit float counter E3M5. See `base.py` for the interfaces.
"""

from opendcu.codecs.base import ArrayCodec, CodecChain, Hdf5Filter, ImageCodec
from opendcu.codecs.binning import Bin2x2
from opendcu.codecs.bslz4 import Bslz4Codec
from opendcu.codecs.float8 import Float8E3M5
from opendcu.codecs.lz4 import Lz4Codec
from opendcu.codecs.none import NoneCodec

#: in the order SIMPLON lists `compression`'s allowed values
CODECS: dict[str, ImageCodec] = {"lz4": Lz4Codec(), "bslz4": Bslz4Codec(), "none": NoneCodec()}


def get_codec(name: str) -> ImageCodec:
    """The codec for a SIMPLON `compression` value."""
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unsupported compression {name!r}; supported: {', '.join(CODECS)}") from None


__all__ = [
    "CODECS",
    "ArrayCodec",
    "Bin2x2",
    "Bslz4Codec",
    "CodecChain",
    "Float8E3M5",
    "Hdf5Filter",
    "ImageCodec",
    "Lz4Codec",
    "NoneCodec",
    "get_codec",
]
