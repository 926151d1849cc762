"""ImageMux: fan-out of compressed images to the customer interfaces."""

from opendcu.app_detector.imagemux.buffer import ImageBuffer, Policy
from opendcu.app_detector.imagemux.mux import BufferedInterface, CompressedImage, ImageInterface, ImageMux

__all__ = ["BufferedInterface", "CompressedImage", "ImageBuffer", "ImageInterface", "ImageMux", "Policy"]
