"""Base system: REST gateway, app manager, server config."""
