"""Layer-by-layer comparison of two sets of named tensors, in model order.

Each name gets one row: OK (within tolerance), DIFF (beyond it), SHAPE (shapes differ) or
MISSING (present on one side only), with max abs, max rel and mean abs error, and for the worst
element its distance to the tolerance, ``worst`` = |d| / (atol + rtol |ref|) (above 1 fails), and
where it is; ``nmse_db`` = 10 log10(Σ d² / Σ ref²) sums a tensor's error in one number fit for
comparing ports (float32 against float64 on a demo clip: -157 to -118 dB, median -131;
the GELU-tanh porting bug: about -70 dB).

**The first divergence** is the tensor that introduced the error, not merely the first that
fails: in model order, the earliest tensor whose ``worst`` exceeds JUMP times every ``worst``
before it (and JUMP times NOISE_FLOOR), provided some tensor fails; when no tensor jumps like
that before the first failure, the first failing tensor. A bug whose first effect stays just
inside the tolerance (a layer-norm eps of 1e-12 instead of 1e-5 at 0.996 of it) is named there,
not at the next layer, which merely crosses the line. A MISSING tensor is never the first
divergence: a partial trace compares what it has.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field, replace

import numpy as np

# The noise of a correct float32 port, in units of the tolerance: minis2t2 against transformers on
# every golden tensor at atol = rtol = 1e-4 has worst 0.005 (median), 0.02 (90th percentile), 0.27
# (the largest, base_group_postln's first encoder layer, where the errors of 14 layers before it add
# up gradually, never by a factor near JUMP from one tensor to the next).
NOISE_FLOOR = 0.02
JUMP = 10.0


@dataclass(frozen=True)
class Row:
    name: str
    status: str  # "OK", "DIFF", "SHAPE" or "MISSING"
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    mean_abs: float = float("nan")
    detail: str = ""
    worst: float = float("nan")  # max |d| / (atol + rtol |ref|): above 1 fails
    where: tuple = field(default=())  # the index of that element
    nmse_db: float = float("nan")  # 10 log10(Σ d² / Σ ref²)
    needed: float = float("nan")  # the smallest t with |d| <= t (1 + |ref|) everywhere: atol = rtol = t passes
    tolerance: tuple = field(default=())  # (atol, rtol) when a per-tensor pattern set it

    def __str__(self) -> str:
        own = f"  (atol {self.tolerance[0]:g}, rtol {self.tolerance[1]:g})" if self.tolerance else ""
        if self.status in ("OK", "DIFF") and not self.detail:
            return (f"[{self.status}] {self.name}  max_abs={self.max_abs:.3e} max_rel={self.max_rel:.3e} "
                    f"mean_abs={self.mean_abs:.3e}  worst={self.worst:.3g}x tol at {list(self.where)}  "
                    f"nmse={self.nmse_db:.1f} dB{own}")
        return f"[{self.status}] {self.name}  {self.detail}{own}"


def compare_arrays(name: str, reference, candidate, atol: float, rtol: float) -> Row:
    """|candidate - reference| <= atol + rtol * |reference| everywhere (numpy.allclose's rule); integers exactly."""
    a, b = np.asarray(reference), np.asarray(candidate)
    if a.shape != b.shape:
        return Row(name, "SHAPE", detail=f"reference {list(a.shape)} vs candidate {list(b.shape)}")
    if a.size == 0:
        return Row(name, "OK", 0.0, 0.0, 0.0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = a.dtype.kind in "iub" and b.dtype.kind in "iub"
    bad_values = np.isfinite(a64) != np.isfinite(b64)  # NaN or inf on one side only
    if bad_values.any():
        first = tuple(int(i) for i in np.argwhere(bad_values)[0])
        return Row(name, "DIFF", detail=f"{int(bad_values.sum())} values are NaN or inf on one side only, the first "
                                        f"at {list(first)}: reference {a64[first]!r}, candidate {b64[first]!r}",
                   worst=math.inf, where=first)
    with np.errstate(invalid="ignore"):  # inf - inf where both sides agree on an infinity
        err = np.where(a64 == b64, 0.0, np.abs(b64 - a64))
    rel = err / np.maximum(np.abs(a64), np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero tolerance: any error is infinitely far
        distance = np.where(err == 0, 0.0, np.inf if exact else err / (atol + rtol * np.abs(a64)))
    where = tuple(int(i) for i in np.unravel_index(np.argmax(distance), distance.shape))
    worst = float(distance[where])
    power = float(np.square(a64[np.isfinite(a64)]).sum())
    noise = float(np.square(err).sum())
    if noise == 0:
        nmse_db = -math.inf  # identical
    elif power == 0:
        nmse_db = math.inf  # an error against an all-zero reference
    else:
        nmse_db = 10 * math.log10(noise / power)
    needed = math.nan if exact else float((err / (1 + np.abs(a64))).max())  # no tolerance excuses an id
    return Row(name, "OK" if worst <= 1 else "DIFF", float(err.max()), float(rel.max()), float(err.mean()),
               worst=worst, where=where, nmse_db=nmse_db, needed=needed)


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


def tolerance_for(name: str, tolerances: dict | None) -> tuple | None:
    """(atol, rtol) of the last pattern in ``tolerances`` ({glob: (atol, rtol)}, fnmatch over the
    tensor names: "encoder.encoder.layers.*", "step.*.decoder.lm_head") that matches ``name``, or None."""
    found = None
    for pattern, pair in (tolerances or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            found = tuple(pair)
    return found


def compare_dicts(reference: dict, candidate: dict, atol: float = 1e-4, rtol: float = 1e-4,
                  order: list[str] | None = None, tolerances: dict | None = None) -> list[Row]:
    """One Row per name, in ``order`` (default: the candidate's insertion order, then the reference's).
    ``tolerances`` ({glob: (atol, rtol)}) loosens or tightens the tensors its patterns match."""
    names = list(order) if order is not None else list(dict.fromkeys([*candidate, *reference]))
    rows = []
    for name in names:
        own = tolerance_for(name, tolerances)
        if name not in reference or name not in candidate:
            side = "reference" if name not in reference else "candidate"
            rows.append(Row(name, "MISSING", detail=f"absent from the {side}"))
        elif own is None:
            rows.append(compare_arrays(name, reference[name], candidate[name], atol, rtol))
        else:
            rows.append(replace(compare_arrays(name, reference[name], candidate[name], *own), tolerance=own))
    return rows


def first_divergence(rows: list[Row], jump: float = JUMP, floor: float = NOISE_FLOOR) -> Row | None:
    """The row of the tensor that introduced the error (see the module's docstring), or None when
    every compared tensor is within tolerance."""
    compared = [r for r in rows if r.status != "MISSING"]
    failing = next((r for r in compared if r.status != "OK"), None)
    if failing is None:
        return None
    before = floor
    for row in compared:
        if row is failing or row.worst > jump * before:
            return row
        before = max(before, row.worst)
    return failing


def summary(rows: list[Row]) -> str:
    """'74 OK / 5 DIFF / 2 SHAPE / 74 MISSING', statuses that occur only."""
    counts = {status: sum(r.status == status for r in rows) for status in ("OK", "DIFF", "SHAPE", "MISSING")}
    return " / ".join(f"{n} {status}" for status, n in counts.items() if n)


def report(rows: list[Row]) -> str:
    """The rows as text, the first divergence marked, runs of MISSING rows as one line each, then
    the counts and the smallest atol = rtol that would pass every compared tensor."""
    first = first_divergence(rows)
    lines, i = [], 0
    while i < len(rows):
        row = rows[i]
        run = 1
        while row.status == "MISSING" and i + run < len(rows) and rows[i + run].status == "MISSING" \
                and rows[i + run].detail == row.detail:
            run += 1
        if run > 1:
            lines.append(f"[MISSING] {row.name} ... {rows[i + run - 1].name}  ({run} tensors {row.detail})")
        else:
            lines.append(str(row) + ("   <-- first divergence" if row is first else ""))
        i += run
    lines.append(summary(rows))
    failing = [r for r in rows if r.status in ("DIFF", "SHAPE")]
    if failing and all(math.isfinite(r.needed) for r in failing):  # float tensors that a tolerance could pass
        needed = max(r.needed for r in rows if math.isfinite(r.needed))
        lines.append(f"the smallest atol = rtol that passes every compared tensor: {needed:.1e}")
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
    def first_divergence(self) -> str | None:
        """The name of the tensor that introduced the error, or None."""
        first = first_divergence(self.rows)
        return None if first is None else first.name

    def assert_ok(self) -> None:
        """Raise AssertionError with the whole report unless every compared tensor agrees (for a
        porter's own tests)."""
        if not self.ok:
            raise AssertionError("\n" + str(self))

    def __str__(self) -> str:
        return "\n".join([*self.notes, report(self.rows)])

    def to_json(self) -> dict:
        """The comparison as strict JSON values: errors that are not a number (a MISSING row has none;
        NaN or inf in a tensor) become null, since JSON has no NaN or Infinity."""
        rows = [{k: (list(v) if isinstance(v, tuple) else v if not isinstance(v, float) or math.isfinite(v) else None)
                 for k, v in r.__dict__.items()} for r in self.rows]
        return {"ok": self.ok, "first_divergence": self.first_divergence, "summary": summary(self.rows),
                "notes": self.notes, "rows": rows}


def token_difference(reference_ids, candidate_ids, ma: dict, mb: dict) -> str:
    """Two id sequences as tokens, the first position where they differ marked >>like this<<. Tokens
    are spelled from the traces' "tokens" metadata (the tokens of the first row of ids, or of every
    row in a batch trace); an id neither trace spells is shown as #id."""
    a, b = np.atleast_2d(np.asarray(reference_ids)), np.atleast_2d(np.asarray(candidate_ids))
    spelled = {}
    for ids, meta in ((a, ma), (b, mb)):
        if "tokens" in meta:
            tokens = json.loads(meta["tokens"])
            for row, row_tokens in zip(ids, tokens if tokens and isinstance(tokens[0], list) else [tokens]):
                spelled.update(zip(row.tolist(), row_tokens))
    rows = [r for r in range(min(len(a), len(b))) if a[r].tolist() != b[r].tolist()] or [0]
    ra, rb = a[rows[0]].tolist(), b[rows[0]].tolist()
    k = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), min(len(ra), len(rb)))

    def show(ids: list) -> str:
        words = [repr(spelled[i]) if i in spelled else f"#{i}" for i in ids]
        if k < len(words):
            words[k] = f">>{words[k]}<<"
        else:
            words.append(">>(end)<<")
        return " ".join(words)

    return f"row {rows[0]}, first difference at position {k}:  reference {show(ra)}  |  candidate {show(rb)}"


def compare(a, b, atol: float = 1e-4, rtol: float = 1e-4, tolerances: dict | None = None) -> Comparison:
    """Compare trace ``b`` (candidate) with trace ``a`` (reference). Each is a trace file's path, a
    (tensors, metadata) pair as ``minis2t2.trace`` returns, or a dict of arrays (no metadata).
    ``tolerances`` maps name patterns to their own (atol, rtol): {"encoder.encoder.layers.*": (1e-3, 1e-3)}
    (the last matching pattern decides).

    Rows follow a's model order; names only b has come last. Text and settings that differ are
    reported as notes, and a differing decoded text is a DIFF row of its own.
    """
    from .trace import load_trace

    def as_pair(x):
        if isinstance(x, tuple):
            return x
        if isinstance(x, dict):
            return x, {}
        return load_trace(x)

    (ta, ma), (tb, mb) = as_pair(a), as_pair(b)
    ma, mb = ({k: str(v) for k, v in m.items()} for m in (ma, mb))  # as a file would hold them
    notes = [f"note: {key} differs: {ma.get(key)!r} vs {mb.get(key)!r}"
             for key in ("config_sha256", "dtype", "num_beams", "max_new_tokens")
             if key in ma and key in mb and ma[key] != mb[key]]  # a dict of arrays has no metadata to differ
    rows = compare_dicts(ta, tb, atol=atol, rtol=rtol, order=list(dict.fromkeys([*ta, *tb])), tolerances=tolerances)
    rows = [replace(r, detail=token_difference(ta[r.name], tb[r.name], ma, mb))
            if r.name == "output.ids" and r.status in ("DIFF", "SHAPE") else r for r in rows]
    if "text" in ma and "text" in mb:
        same = ma["text"] == mb["text"]
        rows.append(Row("output.text", "OK" if same else "DIFF", detail=f"{ma['text']!r}" if same else
                        f"{ma['text']!r} vs {mb['text']!r}"))
    elif "text" in ma or "text" in mb:
        rows.append(Row("output.text", "MISSING", detail=f"absent from the {'candidate' if 'text' in ma else 'reference'}"))
    return Comparison(rows, notes)
