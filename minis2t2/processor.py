"""Speech2Text2Processor equivalent: audio in through the feature extractor, text in (as labels)
and ids out through the tokenizer, so transformers code translates line by line.

Dimension legend: B batch, N samples, S label positions.

    processor(audio, sampling_rate=16000)        -> {"input_values" (B, N), "attention_mask" (B, N)}
    processor(text=["dreiundsiebzig"])           -> {"input_ids": [[...]], "labels" (B, S)}
    processor(audio, sampling_rate=..., text=...) -> {"input_values", "attention_mask", "labels"}:
                                                    model(**inputs) computes the loss, as in transformers
    processor.batch_decode(ids, skip_special_tokens=True) -> ["dreiundsiebzig", ...]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import BatchFeature, FeatureExtractor, check_return_tensors
from .tokenizer import Tokenizer
from .validate import show

IGNORE_INDEX = -100  # torch CrossEntropyLoss's ignore_index: padded label positions add nothing to the loss


@dataclass(frozen=True)
class Processor:
    """The model's feature extractor and tokenizer behind one call, as HF's Speech2Text2Processor."""

    feature_extractor: FeatureExtractor
    tokenizer: Tokenizer

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(self, audio=None, sampling_rate: int | None = None, text: str | list[str] | None = None,
                 return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """Audio -> the feature extractor's output (keyword arguments go to it); text -> its token ids
        and the labels to train on; both -> the audio's inputs and the labels (no input_ids), so
        ``model(**processor(audio, sampling_rate=16000, text=...))`` works as in transformers. A
        dict whose keys are also attributes (BatchFeature)."""
        check_return_tensors(return_tensors)
        if audio is None and text is None:
            raise ValueError("give audio (with sampling_rate=), text, or both")
        out = BatchFeature() if audio is None else self.feature_extractor(audio, sampling_rate=sampling_rate, **kwargs)
        if text is not None:
            encoded = self.labels(text)
            if audio is not None and len(encoded["labels"]) != len(out["input_values"]):
                raise ValueError(f"{len(out['input_values'])} audio input(s) but {len(encoded['labels'])} text(s): "
                                 "give one text per audio")
            out |= encoded if audio is None else {"labels": encoded["labels"]}
        return out

    def labels(self, text: str | list[str]) -> dict:
        """Text -> {"input_ids": the tokenizer's ids (as HF's processor(text=...) gives them, no
        special tokens), "labels": (B, S) int64, each row those ids then </s>, padded with -100}.

        ``labels`` is what ``model(..., labels=...)`` takes, as transformers' model does: the
        decoder learns to emit the text and then stop; the model itself prepends the start token.
        """
        texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"text must be a string or a non-empty list of strings, got {show(text)}")
        ids = [self.tokenizer.encode(t) for t in texts]
        eos = self.tokenizer.encoder[self.tokenizer.eos_token]
        rows = [row + [eos] for row in ids]
        labels = np.full((len(rows), max(map(len, rows))), IGNORE_INDEX, dtype=np.int64)  # (B, S)
        for i, row in enumerate(rows):
            labels[i, : len(row)] = row
        return {"input_ids": ids[0] if isinstance(text, str) else ids, "labels": labels}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)
