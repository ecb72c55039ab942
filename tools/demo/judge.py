"""Compare a candidate demo model's eval.json with the shipped model's, set by set, and judge it by
the rule the model card's candidates have been shipped or refused by since 2026-12-03.

    python -m tools.demo.judge weights/numbers-en-de/eval.json /tmp/candidate/eval.json

Per set: clips right before and after, and the clips one model gets right that the other gets
wrong (fixed, broken: matched by what was said, by whom, from which file). Over the distinct
held-out clips (not the 200-clip Piper sets inside the 600, nor the cut and padded copies) a
two-sided sign test of fixed against broken says whether the two models differ beyond chance.

The rule (write it down before the candidate is evaluated, and change its numbers here only for
a new trial): no held-out set falls by more than MAX_DROP points, a set of at most SMALL_SET clips
by more than one clip (Piper judged over its 600 pooled clips); the talking clock as cut keeps
CLOCK_FLOOR clips and the non-speech set NON_SPEECH_FLOOR; the cut and padded copies of the
synthetic clips, where the shipped model is within GAP points of the plain clips (issue 31's
target), stay within it; and one of GAINS is reached. Exit 0: the rule is met; 1: it is not;
2: a file is missing, unreadable or of other clips.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest

from minis2t2.errors import InputError

MAX_DROP = 2.0  # points
SMALL_SET = 69  # clips: a set this small may fall by one clip, not by points
CLOCK_FLOOR = 17  # of the talking clock's 25 words, cut tight
NON_SPEECH_FLOOR = 58  # of 60 silence and noise clips
JUDGED_ELSEWHERE = {"piper_joe", "piper_joe_8k"}  # inside the 600-clip pooled sets
COPIES = {"tight_trim", "long_silence"}  # the synthetic clips again, cut or padded
GAP = 2.0  # points: how far under the plain clips a copy may be (issue 31)


def rises(new: dict, old: dict, names: list[str], points: float) -> bool:
    """Whether the sets ``names``, pooled, rose by at least ``points`` (counted in clips: no rounding
    at the edge)."""
    gained = sum(right(new[name]) - right(old[name]) for name in names)
    return 100 * gained >= points * sum(old[name]["clips"] for name in names)


def more_right(new: dict, old: dict, name: str, clips: int) -> bool:
    """Whether set ``name`` has at least ``clips`` more clips right now (False where the shipped
    model's eval.json predates the set)."""
    return name in old and right(new[name]) - right(old[name]) >= clips


def reaches(new: dict, old: dict, name: str, target: float) -> bool:
    """Whether set ``name`` reaches ``target`` now, from below it."""
    return old[name]["exact_match"] < target <= new[name]["exact_match"]


def under_plain(s: dict) -> int:
    """How many fewer clips a copy (cut or padded) of the synthetic clips gets right than the same
    clips plain."""
    return round(s["plain_clips_exact_match"] * s["clips"]) - right(s)


def within_gap(s: dict) -> bool:
    """Whether a copy is within GAP points of the plain clips (counted in clips: no rounding at the edge)."""
    return 100 * under_plain(s) <= GAP * s["clips"]


def closes_gap(new: dict, old: dict, name: str) -> bool:
    """Whether copy ``name`` is now within GAP points of the plain clips, and was not."""
    return not within_gap(old[name]) and within_gap(new[name])


GAINS = {  # name: (candidate, shipped) -> reached
    "Piper over 600 clips +1.5 points (mean of both rates)": lambda new, old: rises(
        new, old, ["piper_joe_pooled", "piper_joe_pooled_8k"], 1.5),
    "Kokoro +3 points": lambda new, old: rises(new, old, ["kokoro_ja_held_out_voice"], 3),
    "speaking styles +2 points": lambda new, old: rises(new, old, ["speaking_style"], 2),
    "espeak-ng variants reaching 97%": lambda new, old: reaches(new, old, "espeak_unseen_variants", 0.97),
    "awb reaching 97%": lambda new, old: reaches(new, old, "flite_awb_held_out_voice", 0.97),
    "speaking styles reaching 97%": lambda new, old: reaches(new, old, "speaking_style", 0.97),
    "words that are no number: 10 more of 69 empty": lambda new, old: more_right(new, old, "recorded_no_number", 10),
    "words of nine voice actors that are no number: 30 more of 243 empty": lambda new, old: more_right(
        new, old, "recorded_voice_packs_no_number", 30),
    "cut tight: within 2 points of the plain clips": lambda new, old: closes_gap(new, old, "tight_trim"),
    "1-2 s of silence: within 2 points of the plain clips": lambda new, old: closes_gap(new, old, "long_silence"),
}


def right(s: dict) -> int:
    return round(s["exact_match"] * s["clips"])


def changed(old: dict, new: dict) -> tuple[int, int]:
    """(fixed, broken): clips of one set that ``new`` gets right and ``old`` wrong, and the reverse."""
    def errors(s):
        return Counter((e["said"], str(e["voice"]), e.get("file", "")) for e in s["errors"])
    before, after = errors(old), errors(new)
    return sum((before - after).values()), sum((after - before).values())


def holds(name: str, old: dict, new: dict) -> bool:
    """Whether set ``name`` stays within the rule."""
    if name == "recorded_clock":
        return right(new) >= CLOCK_FLOOR
    if name == "non_speech":
        return right(new) >= NON_SPEECH_FLOOR
    if name in COPIES and within_gap(old) and not within_gap(new):
        return False
    if old["clips"] <= SMALL_SET:
        return right(new) >= right(old) - 1
    return 100 * (right(new) - right(old)) >= -MAX_DROP * old["clips"]  # in clips: no rounding at the edge


def judge(old: dict, new: dict, out=print) -> bool:
    sets = [k for k, v in old.items() if isinstance(v, dict)]
    fixed = broken = 0
    within = True
    for name in sets:
        f, b = changed(old[name], new[name])
        judged = name not in JUDGED_ELSEWHERE
        ok = holds(name, old[name], new[name]) if judged else True
        within &= ok
        if name not in JUDGED_ELSEWHERE | COPIES:
            fixed, broken = fixed + f, broken + b
        verdict = ("ok" if ok else "FALLS") if judged else "(in the 600)"
        if name in COPIES:
            verdict += "  under plain {:.1f} -> {:.1f}".format(*(100 * under_plain(s) / s["clips"]
                                                                for s in (old[name], new[name])))
        out(f"{name:34s} {right(old[name]):5d} -> {right(new[name]):5d} of {old[name]['clips']:<5d} "
            f"{100 * old[name]['exact_match']:5.1f} -> {100 * new[name]['exact_match']:5.1f}%  "
            f"fixed {f:3d} broken {b:3d}  {verdict}")
    p = binomtest(broken, fixed + broken).pvalue if fixed + broken else 1.0
    out(f"distinct held-out clips: fixed {fixed}, broken {broken} (two-sided sign test p = {p:.2g})")
    reached = [gain for gain, test in GAINS.items() if test(new, old)]
    out(f"gains reached: {', '.join(reached) or 'none'}")
    met = within and bool(reached)
    out(f"rule: {'met' if met else 'not met'}")
    return met


def read(path: Path) -> dict:
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable eval.json ({e.__class__.__name__}: {e})") from None
    if not isinstance(evaluation, dict) or not all(
            isinstance(v.get("clips"), int) and isinstance(v.get("errors"), list) and "exact_match" in v
            for v in evaluation.values() if isinstance(v, dict)):
        raise InputError(f"{path}: not an eval.json of tools/demo/evaluate.py (each set needs clips, exact_match, "
                         "errors)")
    return evaluation


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shipped", type=Path, help="the shipped model's eval.json")
    p.add_argument("candidate", type=Path, help="the candidate's eval.json, on the same clips")
    args = p.parse_args(argv)
    try:
        old, new = read(args.shipped), read(args.candidate)
        for name, s in old.items():
            if isinstance(s, dict) and (name not in new or new[name]["clips"] != s["clips"]):
                raise InputError(f"{args.candidate}: set {name!r} is missing or of another size than in "
                                 f"{args.shipped}: not the same clips")
    except InputError as e:
        print(e, file=sys.stderr)
        return 2
    return 0 if judge(old, new) else 1


if __name__ == "__main__":
    sys.exit(main())
