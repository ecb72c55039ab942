"""Benchmarks: the reference and minis2t2 in the same process, reported as ratios. Run from the
repository root, e.g. ``python -m benchmarks.speed``."""

import os

# What `import minis2t2` sets when it comes first (see minis2t2/__init__.py), set here before
# anything loads NumPy: OpenBLAS's idle threads sleep at once instead of spinning on the cores.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
