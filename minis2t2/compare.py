"""Layer-by-layer comparison of two sets of named tensors, in model order.

Each name gets one row: OK (within tolerance), DIFF (beyond it), SHAPE (shapes differ) or
MISSING (present on one side only), with max abs, max rel and mean abs error. The first row
that is not OK is where two implementations start to disagree.
"""

from __future__ import annotations

import math
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
        if self.status in ("OK", "DIFF") and not self.detail:
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
    if exact:
        ok = bool((err == 0).all())
    else:
        same_finite = bool((np.isfinite(a64) == np.isfinite(b64)).all())
        ok = same_finite and bool((err <= atol + rtol * np.abs(a64)).all())
    return Row(name, "OK" if ok else "DIFF", float(err.max()), float(rel.max()), float(err.mean()))


def check(name: str, mine, reference, atol: float = 1e-5, rtol: float = 0.0) -> float:
    """Print how close a hand-built tensor is to the reference and assert it is within tolerance.

    For notebooks: one line "[OK] name  max_abs=..." (as nn-zero-to-hero's ``cmp``), then an
    AssertionError naming the tensor if |mine - reference| > atol + rtol * |reference| anywhere.
    -> the max abs difference.
    """
    row = compare_arrays(name, reference, mine, atol=atol, rtol=rtol)
    print(row)
    assert row.status == "OK", f"{name}: {row}"
    return row.max_abs


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


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two traces: rows in model order plus the metadata checks."""

    rows: list
    notes: list  # metadata differences worth knowing (model, dtype, beams, text)

    @property
    def ok(self) -> bool:
        return first_divergence(self.rows) is None

    @property
    def first_divergence(self) -> Row | None:
        return first_divergence(self.rows)

    def __str__(self) -> str:
        return "\n".join([*self.notes, report(self.rows)])

    def to_json(self) -> dict:
        """The comparison as strict JSON values: errors that are not a number (a MISSING row has none;
        NaN or inf in a tensor) become null, since JSON has no NaN or Infinity."""
        first = self.first_divergence
        rows = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.__dict__.items()}
                for r in self.rows]
        return {"ok": self.ok, "first_divergence": None if first is None else first.name, "notes": self.notes,
                "rows": rows}


def compare(a, b, atol: float = 1e-4, rtol: float = 1e-4) -> Comparison:
    """Compare trace ``b`` (candidate) with trace ``a`` (reference): paths or (tensors, metadata) pairs.

    Rows follow a's model order; names only b has come last. Text and settings that differ are
    reported as notes, and a differing decoded text is a DIFF row of its own.
    """
    from .trace import load_trace

    (ta, ma), (tb, mb) = [load_trace(x) if not isinstance(x, tuple) else x for x in (a, b)]
    ma, mb = ({k: str(v) for k, v in m.items()} for m in (ma, mb))  # as a file would hold them
    notes = [f"note: {key} differs: {ma.get(key)!r} vs {mb.get(key)!r}"
             for key in ("config_sha256", "dtype", "num_beams", "max_new_tokens") if ma.get(key) != mb.get(key)]
    rows = compare_dicts(ta, tb, atol=atol, rtol=rtol, order=list(dict.fromkeys([*ta, *tb])))
    if "text" in ma or "text" in mb:
        same = ma.get("text") == mb.get("text")
        rows.append(Row("output.text", "OK" if same else "DIFF", detail=f"{ma.get('text')!r}" if same else
                        f"{ma.get('text')!r} vs {mb.get('text')!r}"))
    return Comparison(rows, notes)
