"""Cutting long recordings into pieces the model can take, by the loudness of 10 ms frames.

A speech-translation model sees a whole utterance at once: its attention is quadratic in the
length, and it was trained on utterances of a few seconds (the demo model: one number each).
So long audio is cut before it is translated, in one of two ways:

- ``quiet_cuts``: into pieces of at most ``max_seconds``, each cut at the quietest 10 ms of the
  last half of the piece (between words, not through one, wherever the recording allows);
- ``speech_segments``: at pauses, for a recording of separate utterances: every stretch of
  speech between silences of at least ``min_pause`` seconds is one segment (and one that is
  still longer than ``max_seconds`` is cut further by ``quiet_cuts``).

Both work on the samples alone (no model) and return (start, end) sample indices.
"""

from __future__ import annotations

import numpy as np

LOUDNESS_FRAME_SECONDS = 0.01  # loudness is measured in 10 ms frames
# A frame is speech when it is louder than all of: 40 dB below the loudest frame; 6 dB above the
# noise floor (the 10th percentile frame), but at least 20 dB below the loudest frame (a
# recording that is nearly all speech has its "floor" in the speech); and -50 dB full scale.
BELOW_PEAK_DB = 40
ABOVE_FLOOR_DB = 6
FLOOR_BELOW_PEAK_DB = 20
QUIET_DBFS = -50
MARGIN_SECONDS = 0.2  # kept around each segment's speech: soft word onsets and endings, some silence
MIN_SPEECH_SECONDS = 0.1  # shorter bursts (clicks, pops) are not speech


def frame_length(rate: int) -> int:
    """Samples in a 10 ms frame: 160 at 16 kHz."""
    return max(1, int(rate * LOUDNESS_FRAME_SECONDS))


def frame_loudness(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mean power of each 10 ms frame in dB (re full scale 1.0).   (N,) -> (N // frame,)

    Computed a minute of frames at a time, so a recording mapped from disk (hours long) is never
    held in memory at float64."""
    frame = frame_length(rate)
    n = len(audio) // frame
    chunk = 6000  # frames: one minute
    power = np.empty(n)  # (frames,)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        block = audio[first * frame : last * frame].astype(np.float64)
        power[first:last] = np.square(block).reshape(last - first, frame).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


def quiet_cuts(audio: np.ndarray, rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """Cut into consecutive pieces of at most ``max_seconds``, each cut at the quietest frame of
    the last half of its piece.   -> [(start, end), ...] covering all samples"""
    if not max_seconds >= 2 * LOUDNESS_FRAME_SECONDS:
        raise ValueError(f"max_seconds={max_seconds} is too short to cut audio into pieces (at least "
                         f"{2 * LOUDNESS_FRAME_SECONDS} s)")
    if len(audio) <= max_seconds * rate:
        return [(0, len(audio))]
    frame = frame_length(rate)
    longest = int(max_seconds * rate)
    loudness = frame_loudness(audio, rate)
    pieces, start = [], 0
    while len(audio) - start > longest:
        first, last = (start + longest // 2) // frame, (start + longest) // frame  # frames of the last half
        quietest = first + int(np.argmin(loudness[first:last]))
        cut = quietest * frame + frame // 2  # the middle of the quietest frame
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(audio)))
    return pieces


def speech_segments(audio: np.ndarray, rate: int, min_pause: float = 0.5,
                    max_seconds: float | None = 20.0) -> list[tuple[int, int]]:
    """The stretches of speech between pauses of at least ``min_pause`` seconds, each with a
    0.2 s margin; none for silence. A stretch longer than ``max_seconds`` (None: no limit) is cut
    further by ``quiet_cuts``.   -> [(start, end), ...] in order, not overlapping"""
    if not 0 < min_pause < np.inf:
        raise ValueError(f"min_pause must be a positive number of seconds, got {min_pause}")
    frame = frame_length(rate)
    loudness = frame_loudness(audio, rate)  # (frames,)
    if len(loudness) == 0:
        return []
    peak, floor = loudness.max(), np.percentile(loudness, 10)
    threshold = max(peak - BELOW_PEAK_DB, min(floor + ABOVE_FLOOR_DB, peak - FLOOR_BELOW_PEAK_DB), QUIET_DBFS)
    loud = np.flatnonzero(loudness > threshold)  # frames with speech in them
    if len(loud) == 0:
        return []
    gap = round(min_pause / LOUDNESS_FRAME_SECONDS)
    breaks = np.flatnonzero(np.diff(loud) > gap)  # a pause of min_pause or more follows loud[breaks]
    firsts, lasts = np.r_[loud[0], loud[breaks + 1]], np.r_[loud[breaks], loud[-1]]  # frame spans of speech
    margin = round(MARGIN_SECONDS / LOUDNESS_FRAME_SECONDS)
    segments = []
    for first, last in zip(firsts, lasts):
        if (last - first + 1) * LOUDNESS_FRAME_SECONDS < MIN_SPEECH_SECONDS:
            continue
        start = max(0, (first - margin) * frame)
        end = min(len(audio), (last + 1 + margin) * frame)
        if segments and start < segments[-1][1]:  # margins of neighbours meet: share the pause
            start = segments[-1][1] = (segments[-1][1] + start) // 2
        segments.append([start, end])
    if max_seconds is None:
        return [(start, end) for start, end in segments]
    pieces = []
    for start, end in segments:  # a segment longer than max_seconds is cut at its quiet points
        pieces += [(start + a, start + b) for a, b in quiet_cuts(audio[start:end], rate, max_seconds)]
    return pieces
