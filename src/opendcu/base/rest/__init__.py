"""REST gateway of the base system (SIMPLON API, /data files)."""
