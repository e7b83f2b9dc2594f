"""Shared fixtures: a real OpenBao dev server and the vendor simulators, on loopback."""

pytest_plugins = ["tests.plugins.openbao", "tests.plugins.simulators", "tests.plugins.scene"]
