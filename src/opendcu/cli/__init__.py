"""The `dcu` command line."""
