"""Re-execute every teaching notebook in place, so the committed outputs and pictures are current.

    pip install -e ".[notebooks]"
    python -m tools.run_notebooks            # all of notebooks/*.ipynb, in reading order
    python -m tools.run_notebooks 05         # only those whose name starts with 05

Run it whenever the code or the demo model in weights/ changes. CI executes the notebooks
too (pytest --nbmake, part of the README's test command) but does not write their outputs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only the notebooks whose file name starts with one of these")
    prefixes = tuple(parser.parse_args().prefixes)
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not prefixes or p.name.startswith(prefixes))
    if not paths:
        parser.error(f"no notebook in {NOTEBOOKS} starts with {' or '.join(prefixes)}")
    for path in paths:
        start = time.time()
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
                       ).execute()
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
