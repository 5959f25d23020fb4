"""Baselines the benchmark measures segstream against, one runnable module each."""
