"""Use a notebook's own functions elsewhere (its solutions, a test against a reference), without
running the notebook: the named top-level definitions are taken from its code cells and executed.

    from tools.notebook_code import definitions
    ctc = definitions(ROOT / "notebooks" / "13_ctc_by_hand.ipynb", ["BLANK", "ctc_alpha", ...],
                      {"np": np, "log_softmax": log_softmax})
    ctc["ctc_alpha"](logp, target)

Only function definitions and assignments whose name is asked for are run, in the notebook's order,
in the namespace given (which must hold what they use: their imports, other definitions).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path


def definitions(notebook: str | Path, names: list[str], namespace: dict) -> dict:
    """Execute the notebook's top-level ``def NAME`` and ``NAME = ...`` for every NAME in ``names``
    into ``namespace`` -> namespace. A name the notebook never defines is an error."""
    wanted, found = set(names), set()
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        for node in tree.body:
            defined = ({node.name} if isinstance(node, ast.FunctionDef)
                       else {t.id for t in node.targets if isinstance(t, ast.Name)} if isinstance(node, ast.Assign)
                       else set())
            if defined & wanted:
                code = compile(ast.Module(body=[node], type_ignores=[]), str(notebook), "exec")
                exec(code, namespace)  # noqa: S102  (this repository's own notebook, the point of the tool)
                found |= defined & wanted
    if wanted - found:
        raise KeyError(f"{notebook}: does not define {sorted(wanted - found)}")
    return namespace
