"""ImageMux: fan-out of compressed images to the customer interfaces."""

from opendcu.app_detector.imagemux.mux import CompressedImage, ImageInterface, ImageMux

__all__ = ["CompressedImage", "ImageInterface", "ImageMux"]
