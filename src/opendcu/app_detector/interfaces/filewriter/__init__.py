"""FileWriter: HDF5/NXmx files in the data directory (served by the base system over HTTP)."""
