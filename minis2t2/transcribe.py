"""Long audio: translate a recording of any length piece by piece, or utterance by utterance.

The model reads one utterance at a time (attention is quadratic in frames, and a model trained on
short clips knows nothing longer). These functions cut a recording first (``segment.py`` says
how), then translate each piece on its own: memory stays that of one piece, however long the
recording. ``Model.translate`` and ``Model.segments`` are these functions, bound as methods (as
whisper binds its ``transcribe``).
"""

from __future__ import annotations

import numpy as np

from .audio import waveform
from .segment import quiet_cuts, speech_segments


def translate(model, audio, sampling_rate: int | None = None, max_seconds: float | None = 20.0, progress=None,
              **generation_kwargs) -> str | list[str]:
    """An audio file path, or one mono waveform with its ``sampling_rate`` -> the decoded text of
    the best hypothesis; a list of them -> a list of texts, one per item, in order.

    Audio longer than ``max_seconds`` (None: no limit) is cut at its quietest points into pieces
    of at most that length (``segment.quiet_cuts``); each is translated on its own and the texts
    are joined with spaces. ``progress(i, n, start_s, end_s)`` is called before each piece when
    there are several.
    """
    if isinstance(audio, (list, tuple)):
        return [translate(model, item, sampling_rate, max_seconds, progress, **generation_kwargs) for item in audio]
    rate = model.processor.sampling_rate
    samples = waveform(audio, sampling_rate, rate)
    pieces = [(0, len(samples))] if max_seconds is None else quiet_cuts(samples, rate, max_seconds)
    return " ".join(text for text in translate_pieces(model, samples, pieces, progress, generation_kwargs) if text)


def segments(model, audio, sampling_rate: int | None = None, min_pause: float = 0.5,
             max_seconds: float | None = 20.0, progress=None, **generation_kwargs) -> list[dict]:
    """A recording of separate utterances, split at pauses of at least ``min_pause`` seconds
    (``segment.speech_segments``; an utterance longer than ``max_seconds`` is cut further at
    its quietest points), each translated on its own.
    -> [{"start": seconds, "end": seconds, "text": ...}, ...] in order; [] for silence. A list of
    recordings -> a list of such lists."""
    if isinstance(audio, (list, tuple)):
        return [segments(model, item, sampling_rate, min_pause, max_seconds, progress, **generation_kwargs)
                for item in audio]
    rate = model.processor.sampling_rate
    samples = waveform(audio, sampling_rate, rate)
    pieces = speech_segments(samples, rate, min_pause, max_seconds)
    texts = translate_pieces(model, samples, pieces, progress, generation_kwargs)
    return [{"start": round(int(start) / rate, 3), "end": round(int(end) / rate, 3), "text": text}
            for (start, end), text in zip(pieces, texts)]


def translate_pieces(model, samples: np.ndarray, pieces, progress, generation_kwargs: dict) -> list[str]:
    """Translate samples[start:end] for each (start, end) of ``pieces``, one at a time."""
    rate = model.processor.sampling_rate
    texts = []
    for i, (start, end) in enumerate(pieces):
        if progress is not None and len(pieces) > 1:
            progress(i, len(pieces), start / rate, end / rate)
        inputs = model.processor(samples[start:end], sampling_rate=rate)
        ids = model.generate(inputs["input_values"], inputs.get("attention_mask"), **generation_kwargs)
        texts.append(model.tokenizer.decode(ids[0], skip_special_tokens=True))
    return texts
