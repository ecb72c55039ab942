"""Layer-by-layer comparison of two sets of named tensors, in model order.

Each name gets one row: OK (within tolerance), DIFF (beyond it), SHAPE (shapes differ) or
MISSING (present on one side only), with max abs, max rel and mean abs error. The first row
that is not OK is where two implementations start to disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Row:
    name: str
    status: str  # "OK", "DIFF", "SHAPE" or "MISSING"
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    mean_abs: float = float("nan")
    detail: str = ""

    def __str__(self) -> str:
        if self.status in ("OK", "DIFF"):
            return (f"[{self.status}] {self.name}  max_abs={self.max_abs:.3e} max_rel={self.max_rel:.3e} "
                    f"mean_abs={self.mean_abs:.3e}")
        return f"[{self.status}] {self.name}  {self.detail}"


def compare_arrays(name: str, reference, candidate, atol: float, rtol: float) -> Row:
    """|candidate - reference| <= atol + rtol * |reference| everywhere (numpy.allclose's rule); integers exactly."""
    a, b = np.asarray(reference), np.asarray(candidate)
    if a.shape != b.shape:
        return Row(name, "SHAPE", detail=f"reference {list(a.shape)} vs candidate {list(b.shape)}")
    if a.size == 0:
        return Row(name, "OK", 0.0, 0.0, 0.0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    err = np.abs(b64 - a64)
    rel = err / np.maximum(np.abs(a64), np.finfo(np.float64).tiny)
    exact = a.dtype.kind in "iub" and b.dtype.kind in "iub"
    ok = bool((err == 0).all()) if exact else bool((err <= atol + rtol * np.abs(a64)).all()) and np.isfinite(b64).all() == np.isfinite(a64).all()
    return Row(name, "OK" if ok else "DIFF", float(err.max()), float(rel.max()), float(err.mean()))


def compare_dicts(reference: dict, candidate: dict, atol: float = 1e-4, rtol: float = 1e-4,
                  order: list[str] | None = None) -> list[Row]:
    """One Row per name, in ``order`` (default: the candidate's insertion order, then the reference's)."""
    names = list(order) if order is not None else list(dict.fromkeys([*candidate, *reference]))
    rows = []
    for name in names:
        if name not in reference or name not in candidate:
            side = "reference" if name not in reference else "candidate"
            rows.append(Row(name, "MISSING", detail=f"absent from the {side}"))
        else:
            rows.append(compare_arrays(name, reference[name], candidate[name], atol, rtol))
    return rows


def first_divergence(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.status != "OK"), None)


def report(rows: list[Row]) -> str:
    """The rows as text, the first divergence marked."""
    first = first_divergence(rows)
    lines = [str(r) + ("   <-- first divergence" if r is first else "") for r in rows]
    lines.append("all OK" if first is None else f"first divergence: {first.name}")
    return "\n".join(lines)
