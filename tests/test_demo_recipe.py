"""The demo model's recipe pieces: number spellers (checked against num2words, an independent
well-kept package) and the BPE learner (its files read by transformers' tokenizer)."""

import json
import sys
from pathlib import Path

from num2words import num2words
from transformers import Speech2Text2Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "demo"))
from bpe import SPECIALS, learn_merges  # noqa: E402
from spell import english, german, german_parts  # noqa: E402


def test_german_matches_num2words():
    for n in range(1000):
        assert german(n) == num2words(n, lang="de"), n
        assert "".join(german_parts(n)) == german(n)


def test_english_matches_num2words():
    for n in range(1000):
        assert english(n, british_and=True) == num2words(n, lang="en").replace("-", " "), n
        assert english(n) == english(n, british_and=True).replace(" and ", " ")


def test_bpe_pieces_are_morphemes(tmp_path):
    merges = learn_merges([german_parts(n) for n in range(1000)], num_merges=1000)
    (tmp_path / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges))
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(SPECIALS)}))
    probe = Speech2Text2Tokenizer(str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"))
    for n in range(1000):
        assert [t.rstrip("@") for t in probe.tokenize(german(n))] == german_parts(n), n
