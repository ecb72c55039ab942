"""Learn BPE merges in the fastBPE / subword-nmt format that Speech2Text2Tokenizer reads.

Learning: every word is split into characters, the last one marked with "</w>"; the most
frequent adjacent pair is merged, again and again (here within morphemes only, see below).
merges.txt lists the merges in the order learned (its line order is the merge rank).
vocab.json holds <s>=0 <pad>=1 </s>=2 <unk>=3 and every piece the segmented corpus uses: a
piece inside a word ends in "@@", a word-final piece has no marker.
"""

from __future__ import annotations

import itertools
from collections import Counter

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def learn_merges(words: list[list[str]], num_merges: int) -> list[tuple[str, str]]:
    """Merges learned on words given as morphemes: pairs are counted within a morpheme only, so
    every learned piece lies inside one morpheme ("drei", "und", "siebzig") and never spans two."""
    vocab = Counter()
    for parts in words:
        symbols = [list(p) for p in parts]
        symbols[-1][-1] += "</w>"
        vocab[tuple(tuple(p) for p in symbols)] += 1
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for word, count in vocab.items():
            for part in word:
                for pair in itertools.pairwise(part):
                    pairs[pair] += count
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])  # ties broken by sorted order: deterministic
        merges.append(best)
        vocab = Counter({tuple(_merge(part, best) for part in word): count for word, count in vocab.items()})
    return merges


def _merge(part: tuple, pair: tuple) -> tuple:
    out, i = [], 0
    while i < len(part):
        if i < len(part) - 1 and (part[i], part[i + 1]) == pair:
            out.append(part[i] + part[i + 1])
            i += 2
        else:
            out.append(part[i])
            i += 1
    return tuple(out)
