"""Validation helpers every loader uses: configs, weights, audio headers, tokenizer files,
generation settings. Each failure is a ConfigError naming the file and field and what was
expected (``show`` prints the value as the user wrote it)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .errors import ConfigError


def check_known(d: dict, known: frozenset, where: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; transformers 4.40.2 has no such setting")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is not the number 1


def is_count(v) -> bool:
    """An integer >= 0: a size, an offset, a token id."""
    return is_int(v) and v >= 0


INT_LIST = (lambda v: isinstance(v, list) and len(v) > 0 and all(map(is_int, v)), "a non-empty list of integers")


# What each annotation of the config dataclasses accepts from JSON, and how to say it.
KINDS = {
    "int": (is_int, "an integer"),
    "float": (lambda v: is_int(v) or (isinstance(v, float) and math.isfinite(v)), "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "None": (lambda v: v is None, "null"),
    "tuple": INT_LIST,  # JSON has lists only; the dataclasses keep them as tuples
    "list": INT_LIST,
}


def show(value) -> str:
    """A value as the user wrote it, cut short: "128" (a string) versus 128."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_fields(cls, d: dict, where: str, bounds: dict[str, tuple]) -> dict:
    """The entries of ``d`` that are fields of dataclass ``cls``, each checked against the field's
    annotation and, for numbers and lists of numbers, against ``bounds[name] = (low, high)``
    (inclusive). Lists become tuples. Raises ConfigError naming ``where``, the field and what
    was expected."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not any(KINDS[k][0](v) for k in kinds):
            expected = " or ".join(KINDS[k][1] for k in kinds)
            raise ConfigError(f"{where}: {f.name} must be {expected}, got {show(v)}")
        if f.name in bounds and v is not None and not isinstance(v, (str, bool)):
            low, high = bounds[f.name]
            if any(not low <= x <= high for x in (v if isinstance(v, list) else [v])):
                raise ConfigError(f"{where}: {f.name} must be between {low} and {high}"
                                  f"{' (each entry)' if isinstance(v, list) else ''}, got {show(v)}")
        out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def read_json(path: str | Path) -> dict:
    """Read a JSON file whose top level is an object, turning every failure into one clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, nesting or integers beyond Python's limits
        raise ConfigError(f"{path} is not valid JSON: {str(e)[:200]}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level, got {type(d).__name__}")
    return d
