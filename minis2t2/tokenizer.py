"""Speech2Text2Tokenizer equivalent: fastBPE "@@ " subwords (transformers 4.40.2).

Decoding joins tokens with spaces and deletes every "@@ ", so "ein@@ und@@ zwanzig" reads
"einundzwanzig". Encoding runs BPE per whitespace-separated word with the merges of
``merges.txt``, ranked by line order. HF's quirks are reproduced on purpose and marked.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .validate import is_count, read_json, show

BPE_TOKEN_MERGES = "</w>"  # end-of-word marker used while merging
BPE_TOKEN_VOCAB = "@@ "  # continuation marker in the vocabulary


def get_pairs(word: tuple) -> set:
    """Adjacent symbol pairs of a word: ("a", "b", "c") -> {("a", "b"), ("b", "c")}."""
    return set(itertools.pairwise(word))


def clean_up_tokenization(text: str) -> str:
    """HF's default post-processing of decoded text: no space before . ? ! , and English clitics."""
    return (
        text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
        .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve").replace(" 're", "'re")
    )


@dataclass
class Tokenizer:
    """vocab.json (+ merges.txt for encoding) -> ids and back."""

    encoder: dict[str, int]
    bpe_ranks: dict[tuple[str, str], int] | None = None  # None: decode-only, as HF without merges.txt
    bos_token: str = "<s>"
    pad_token: str = "<pad>"
    eos_token: str = "</s>"
    unk_token: str = "<unk>"
    do_lower_case: bool = False
    clean_up_tokenization_spaces: bool = True
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.decoder = {i: t for t, i in self.encoder.items()}
        missing = [t for t in self.special_tokens if t not in self.encoder]
        if missing:
            raise ConfigError(f"vocab.json lacks the special token(s) {missing}")
        self.all_special_ids = {self.encoder[t] for t in self.special_tokens}
        self._special_split = re.compile("(" + "|".join(re.escape(t) for t in self.special_tokens) + ")")

    @property
    def special_tokens(self) -> list[str]:
        return [self.bos_token, self.eos_token, self.unk_token, self.pad_token]

    @classmethod
    def from_folder(cls, folder: str | Path) -> Tokenizer:
        folder = Path(folder)
        encoder = read_json(folder / "vocab.json")
        bad = next((t for t, i in encoder.items() if not is_count(i)), None)
        if bad is not None:
            raise ConfigError(f"{folder / 'vocab.json'}: ids must be integers >= 0; {bad!r} has {show(encoder[bad])}")
        if len(set(encoder.values())) != len(encoder):
            twice = sorted(i for i, n in Counter(encoder.values()).items() if n > 1)[:5]
            raise ConfigError(f"{folder / 'vocab.json'}: each id must belong to one token; {twice} are used twice")
        settings = {}
        if (folder / "tokenizer_config.json").is_file():
            path = folder / "tokenizer_config.json"
            cfg = read_json(path)
            for key in ("bos_token", "pad_token", "eos_token", "unk_token"):
                if key in cfg:
                    value = cfg[key].get("content") if isinstance(cfg[key], dict) else cfg[key]  # AddedToken form
                    if not (isinstance(value, str) and value):
                        raise ConfigError(f"{path}: {key} must be a token (a non-empty string), got {show(cfg[key])}")
                    settings[key] = value
            for key in ("do_lower_case", "clean_up_tokenization_spaces"):
                if key in cfg:
                    if not isinstance(cfg[key], bool):
                        raise ConfigError(f"{path}: {key} must be true or false, got {show(cfg[key])}")
                    settings[key] = cfg[key]
        bpe_ranks = None
        if (folder / "merges.txt").is_file():
            try:
                text = (folder / "merges.txt").read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(f"{folder / 'merges.txt'}: not UTF-8 text ({e.reason} at byte {e.start})") from e
            # HF quirk: split("\n")[:-1] drops the last line, so a file without a trailing
            # newline loses its last merge. Only the first two fields of a line are used.
            merges = [tuple(line.split()[:2]) for line in text.split("\n")[:-1]]
            bpe_ranks = dict(zip(merges, range(len(merges))))
        return cls(encoder=encoder, bpe_ranks=bpe_ranks, **settings)

    @property
    def bos_token_id(self) -> int:
        return self.encoder[self.bos_token]

    @property
    def eos_token_id(self) -> int:
        return self.encoder[self.eos_token]

    @property
    def pad_token_id(self) -> int:
        return self.encoder[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.encoder[self.unk_token]

    @property
    def vocab_size(self) -> int:
        return len(self.decoder)

    def bpe(self, token: str) -> str:
        """One word -> its subwords joined by "@@ ", e.g. "dreizehn" -> "drei@@ zehn"."""
        return self.bpe_and_show_work(token)["result"]

    def bpe_and_show_work(self, token: str) -> dict:
        """BPE of one word with every merge step: {"merges": [(pair, word after)], "result": str}."""
        word = tuple(token[:-1]) + (token[-1] + BPE_TOKEN_MERGES,)  # mark the end of the word
        steps = []
        if token in self.cache:
            return {"merges": steps, "result": self.cache[token]}
        pairs = get_pairs(word)
        if not pairs:
            return {"merges": steps, "result": token}  # HF quirk: a one-character word comes back unmarked and uncached
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))  # lowest rank merges first
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):  # merge every left-to-right occurrence of the pair
                if first in word[i:]:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                else:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            steps.append((bigram, word))
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        result = " ".join(word)
        if result == "\n  " + BPE_TOKEN_MERGES:  # HF quirk, kept verbatim
            result = "\n" + BPE_TOKEN_MERGES
        if result.endswith(BPE_TOKEN_MERGES):
            result = result.replace(BPE_TOKEN_MERGES, "")
        result = result.replace(" ", BPE_TOKEN_VOCAB)
        self.cache[token] = result
        return {"merges": steps, "result": result}

    def tokenize(self, text: str) -> list[str]:
        """Text -> subword tokens. Special tokens written in the text are kept whole, as HF's added-token split does."""
        if self.bpe_ranks is None:
            raise ValueError("this tokenizer has no merges.txt, so it can only decode, not encode")
        tokens = []
        for piece in self._special_split.split(text):
            if piece in self.special_tokens:
                tokens.append(piece)
                continue
            if self.do_lower_case:
                piece = piece.lower()
            for word in piece.split():
                tokens.extend(self.bpe(word).split(" "))
        return tokens

    def unknown_pieces(self, text: str) -> list[str]:
        """The subwords of ``text`` the vocabulary lacks (``encode`` would make them <unk>): a target
        text with any cannot be learned."""
        return [piece for piece in self.tokenize(text) if piece not in self.encoder]

    def encode(self, text: str) -> list[int]:
        """Text -> ids. No <s> or </s> is added (Speech2Text2Tokenizer adds none); unknown subwords -> <unk>."""
        unk = self.encoder[self.unk_token]
        return [self.encoder.get(t, unk) for t in self.tokenize(text)]

    def __call__(self, text: str | list[str]) -> dict:
        """HF-style call: {"input_ids": ids, "attention_mask": ones}, for one text or a list."""
        if isinstance(text, str):
            ids = self.encode(text)
            return {"input_ids": ids, "attention_mask": [1] * len(ids)}
        batch = [self.encode(t) for t in text]
        return {"input_ids": batch, "attention_mask": [[1] * len(ids) for ids in batch]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text: tokens joined with spaces, every "@@ " removed (a trailing "@@" survives)."""
        tokens = []
        for i in (int(i) for i in ids):
            if skip_special_tokens and i in self.all_special_ids:
                continue
            tokens.append(self.decoder.get(i, self.unk_token))
        text = "".join(" ".join(tokens).split(BPE_TOKEN_VOCAB))
        return clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]
