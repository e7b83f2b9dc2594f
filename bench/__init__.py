"""Benchmarks and long-running reliability scenarios (not part of the installed package)."""
