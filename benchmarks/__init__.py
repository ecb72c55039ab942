"""Benchmarks: the reference and minis2t2 in the same process, reported as ratios. Run from the
repository root, e.g. ``python -m benchmarks.speed``."""
