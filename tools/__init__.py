"""Tools that make goldens, notebook data, figures and reports. Run each from the repository root
as a module, e.g. ``python -m tools.make_goldens``; ``--help`` says what it does."""

import os

# What `import minis2t2` sets when it comes first (see minis2t2/__init__.py), set here before
# anything loads NumPy: OpenBLAS's idle threads sleep at once instead of spinning on the cores.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
