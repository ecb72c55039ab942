"""The tokenizer against transformers' Speech2Text2Tokenizer: HF's own test case, then random text and ids."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import Speech2Text2Tokenizer

from minis2t2.tokenizer import Tokenizer
from tests import reference as R

HF_TEST_VOCAB = "<s> <pad> </s> <unk> here@@ a couple of@@ words for the he@@ re@@ vocab".split()


def test_hf_own_decode_example(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(HF_TEST_VOCAB)}))
    tok = Tokenizer.from_folder(tmp_path)  # no merges.txt: decode-only, as in HF's test
    assert tok.decode([4, 6, 8, 7, 10]) == "herecouple words ofthe"
    assert tok.bpe_ranks is None


def _pair(tmp_path):
    R.write_tokenizer(tmp_path)
    return Tokenizer.from_folder(tmp_path), Speech2Text2Tokenizer.from_pretrained(str(tmp_path))


text = st.lists(
    st.one_of(st.sampled_from(R.WORDS), st.text(alphabet="einszwdructhag.,!? ", min_size=1, max_size=12),
              st.sampled_from(["</s>", "<unk>", "<s>"])),
    max_size=8,
).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(text=text)
def test_encode_matches_hf(tmp_path_factory, text):
    ours, hf = _pair(tmp_path_factory.mktemp("tok"))
    assert ours.tokenize(text) == hf.tokenize(text)
    assert ours(text)["input_ids"] == hf(text)["input_ids"]


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 90), max_size=12), skip=st.booleans())
def test_decode_matches_hf(tmp_path_factory, ids, skip):
    ours, hf = _pair(tmp_path_factory.mktemp("tok"))
    assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)


def test_merges_without_trailing_newline_lose_last_merge(tmp_path):
    R.write_tokenizer(tmp_path)
    merges = tmp_path / "merges.txt"
    merges.write_text(merges.read_text().rstrip("\n"))
    ours, hf = Tokenizer.from_folder(tmp_path), Speech2Text2Tokenizer.from_pretrained(str(tmp_path))
    assert len(ours.bpe_ranks) == len(R.MERGES) - 1
    for word in R.WORDS:
        assert ours.tokenize(word) == hf.tokenize(word)


def test_bpe_shows_its_work(tmp_path):
    ours, hf = _pair(tmp_path)
    for word in ["zweihundert", "dreizehn", "einundzwanzig"]:
        work = ours.bpe_and_show_work(word + "x")  # an uncached word
        assert work["result"].split(" ") == hf.tokenize(word + "x")
        assert work["merges"], "a word made of known pairs merges at least once"
        last_word = work["merges"][-1][1]
        assert "@@ ".join(last_word).replace("</w>", "") == work["result"]
