"""Shared test settings.

- Hypothesis runs derandomised when CI is set (a fixed seed per test, no example database), so a
  CI run passes or fails on the code, never on the draw; locally it explores new examples.
- Markers: ``slow`` (the full-size architecture, the wheel build) and ``notebooks`` (every
  notebook, run by nbmake): ``pytest -m "not slow and not notebooks"`` is the quick loop; the
  README's command runs everything.
- Tests that compare against transformers need torch and transformers (the reference). Without
  them only the NumPy-only modules are collected, and the header says which were left out.
"""

import importlib.util
import os
import re
from pathlib import Path

import pytest
from hypothesis import settings

TESTS = Path(__file__).resolve().parent

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

HAS_REFERENCE = all(importlib.util.find_spec(name) for name in ("torch", "transformers"))
# the modules that import torch or transformers at the top, directly or through tests/reference.py
# or a tool built on them (tools/trace_transformers.py, the demo recipe)
REFERENCE_IMPORT = (r"^(import torch|from torch|import transformers|from transformers"
                    r"|from tests import .*\breference\b|from tests\.reference|from tools\.(trace_transformers|demo))\b")
NEEDS_REFERENCE = sorted(path.name for path in TESTS.glob("test_*.py")
                         if re.search(REFERENCE_IMPORT, path.read_text(), re.MULTILINE))
collect_ignore = [] if HAS_REFERENCE else NEEDS_REFERENCE
SLOW = {"test_fullsize.py", "test_packaging.py"}


def pytest_report_header(config):
    if not HAS_REFERENCE:
        return f"torch/transformers not installed: {len(NEEDS_REFERENCE)} reference modules not collected"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebooks)
        elif item.path.name in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    if HAS_REFERENCE:
        import torch

        torch.set_num_threads(2)
