"""Customer interfaces fed by the ImageMux: FileWriter (and Stream, Monitor)."""
