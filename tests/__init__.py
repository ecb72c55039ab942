"""The test suite, and the helpers that tests, tools and benchmarks share.

Run tools and benchmarks from the repository root as modules (``python -m tools.make_goldens``,
``python -m benchmarks.speed``), so that ``tests``, ``tools`` and ``benchmarks`` import each other
as packages. The shared helpers:

- ``tests.signals``   the deterministic test signal (NumPy only)
- ``tests.goldens``   the frozen transformers outputs in tests/golden and how to check a model on them
                      (NumPy and minis2t2 only, so the GPU machine can run it)
- ``tests.fullsize``  the full-size facebook/s2t-wav2vec2-large-en-de architecture (standard library)
- ``tests.strict_xp`` a stand-in for CuPy that fails any layer handing a device array to NumPy
- ``tests.reference`` the transformers side: random-init HF models, their outputs (needs torch)
"""

import os

# What `import minis2t2` sets when it comes first (see minis2t2/__init__.py), set here before
# anything loads NumPy: OpenBLAS's idle threads sleep at once instead of spinning on the cores.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
