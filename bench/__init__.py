"""Benchmarks of segstream (see bench/README.md); not part of the service package."""
