"""Numbers 0-999 spelled out: English (what the voices say) and German (what the model writes).

German writes a number as one word, units before tens: 73 -> "dreiundsiebzig",
412 -> "vierhundertzwölf". Rules (Duden): 1 is "eins" alone and at the end ("einhunderteins"),
"ein" before "und"/"hundert" ("einundzwanzig", "einhundert"); 16/17/60/70 drop letters
("sechzehn", "siebzehn", "sechzig", "siebzig"); 30 is "dreißig".
"""

from __future__ import annotations

EN_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

DE_ONES = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf",
           "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn"]
DE_TENS = ["", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"]


def _check(n: int) -> None:
    if not isinstance(n, int) or not 0 <= n <= 999:
        raise ValueError(f"numbers 0-999 only, got {n!r}")


def english(n: int, british_and: bool = False) -> str:
    """412 -> "four hundred twelve" (or "four hundred and twelve")."""
    _check(n)
    hundreds, rest = divmod(n, 100)
    if rest < 20:
        tail = EN_ONES[rest]
    else:
        tail = EN_TENS[rest // 10] + ("" if rest % 10 == 0 else " " + EN_ONES[rest % 10])
    if hundreds == 0:
        return tail
    head = EN_ONES[hundreds] + " hundred"
    if rest == 0:
        return head
    return head + (" and " if british_and else " ") + tail


def german_parts(n: int) -> list[str]:
    """73 -> ["drei", "und", "siebzig"], 412 -> ["vier", "hundert", "zwölf"]: the morphemes of german(n)."""
    _check(n)
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        parts += ["ein" if hundreds == 1 else DE_ONES[hundreds], "hundert"]
    if rest >= 20 and rest % 10:
        units = rest % 10
        parts += ["ein" if units == 1 else DE_ONES[units], "und", DE_TENS[rest // 10]]
    elif rest >= 20:
        parts.append(DE_TENS[rest // 10])
    elif rest or not hundreds:
        parts.append(DE_ONES[rest])
    return parts


def german(n: int) -> str:
    """73 -> "dreiundsiebzig", 101 -> "einhunderteins", 0 -> "null"."""
    return "".join(german_parts(n))
