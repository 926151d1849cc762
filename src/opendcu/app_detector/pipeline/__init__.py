"""Image pipeline: corrections, placement, summation, masking and compression, in worker processes."""
