"""Monitor interface: recent images as TIFF for live display (spec/monitor-tiff.md)."""
