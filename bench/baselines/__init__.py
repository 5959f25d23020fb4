"""Baselines the benchmark measures segstream against, one runnable module each."""

from __future__ import annotations

import argparse


def baseline_parser(prog: str) -> argparse.ArgumentParser:
    """The arguments every baseline gets from ``bench.throughput.command``: the broker, its
    consumer group, the input topics and the output topic. (``quix_app.py`` runs in a
    virtualenv of its own, without this package, and repeats them.)"""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topics", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    return parser
