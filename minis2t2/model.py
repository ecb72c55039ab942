"""SpeechEncoderDecoderModel: the encoder, the glue and the decoder, plus loading and generation.

Dimension legend: B batch, N samples, T encoder frames, S decoder steps, C channels, V vocabulary.

    input_values (B, N) --encoder--> (B, T, C_enc) --enc_to_dec_proj?--> (B, T, C_dec)
    decoder_input_ids (B, S) + that --decoder--> logits (B, S, V)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import decoder as dec
from . import encoder as enc
from .audio import FeatureExtractor, waveform
from .backend import device_module, to_numpy
from .config import ModelConfig
from .encoder import FrameTiming, frame_timing
from .generation import GenerationConfig, SearchSettings, beam_search, greedy_search
from .layers import linear, log_softmax, padding_bias, record_to
from .processor import IGNORE_INDEX, Processor
from .segment import quiet_cuts, speech_segments
from .tokenizer import Tokenizer
from .checkpoint import from_hub, load_state_dict
from .weights import Tree, WeightsError, check_shapes, normalise_weight_norm_names, to_float, unflatten

REQUIRED_FILES = ("config.json", "preprocessor_config.json", "vocab.json")
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class Seq2SeqOutput:
    logits: np.ndarray  # (B, S, V)
    encoder_last_hidden_state: np.ndarray  # (B, T, C_dec), after enc_to_dec_proj as in HF
    loss: float | None = None
    # With output_attentions=True, one array of attention probabilities per layer, as HF returns them:
    encoder_attentions: tuple | None = None  # (B, H, T, T) per encoder layer
    decoder_attentions: tuple | None = None  # (B, H, S, S) per decoder layer, causal self-attention
    cross_attentions: tuple | None = None  # (B, H, S, T) per decoder layer, over the encoder frames


def expected_weight_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every tensor a SpeechEncoderDecoderModel checkpoint holds, with its shape."""
    shapes = enc.encoder_weight_shapes(cfg.encoder) | dec.decoder_weight_shapes(cfg.decoder)
    if cfg.has_enc_to_dec_proj:
        shapes["enc_to_dec_proj.weight"] = (cfg.decoder.d_model, cfg.encoder.hidden_size)
        shapes["enc_to_dec_proj.bias"] = (cfg.decoder.d_model,)
    return shapes


def to_host(record: dict | None) -> None:
    """Bring a record's arrays back to host memory (a no-op on the CPU): the API boundary."""
    for name, value in (record or {}).items():
        record[name] = to_numpy(value)


def shift_tokens_right(labels: np.ndarray, pad_token_id: int, start_token_id: int) -> np.ndarray:
    """Teacher forcing inputs: [start, labels[:-1]], with -100 (ignored) positions read as pad.   (B, S) -> (B, S)"""
    shifted = np.empty_like(labels)
    shifted[:, 0] = start_token_id
    shifted[:, 1:] = labels[:, :-1]
    return np.where(shifted == IGNORE_INDEX, pad_token_id, shifted)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """torch CrossEntropyLoss(ignore_index=-100), mean over the labelled positions.   (B, S, V), (B, S) -> scalar"""
    keep = labels != IGNORE_INDEX  # (B, S)
    if not keep.any():
        return float("nan")  # torch also returns nan when every label is ignored
    logp = log_softmax(logits[keep])  # (M, V)
    return float(-logp[np.arange(len(logp)), labels[keep]].mean())


class Model:
    """A loaded model: weights, configs, processor, tokenizer, generation defaults.

    Use ``minis2t2.load(path)``. The weights live in ``self.params``, a tree whose keys are
    the checkpoint's own names (``params.encoder.encoder.layers[0].attention.q_proj.weight``).
    """

    def __init__(self, config: ModelConfig, params: Tree, processor: Processor, tokenizer: Tokenizer,
                 generation_config: GenerationConfig, positions_table, dtype, xp=np):
        self.config = config
        self.params = params
        self.processor = processor
        self.tokenizer = tokenizer
        self.generation_config = generation_config
        self.positions_table = positions_table  # (P, C_dec) decoder sinusoidal positions
        self.dtype = np.dtype(dtype)
        self.xp = xp  # the array module the weights live in (numpy, or cupy for device="cuda")

    @property
    def frame_timing(self) -> FrameTiming:
        """Frame hop, receptive field and seconds per encoder frame, from config.json's conv stack
        and the feature extractor's sampling rate (the one source of every time axis)."""
        return frame_timing(self.config.encoder, self.processor.sampling_rate)

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: str | Path, dtype: str = "float32", device: str = "cpu") -> "Model":
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a model folder")
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is missing {', '.join(missing)} (a HF model folder needs them)")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        config = ModelConfig.from_file(folder / "config.json")
        tensors = normalise_weight_norm_names(load_state_dict(folder))
        expected = expected_weight_shapes(config)
        optional = {"decoder.model.decoder.embed_positions.weights"}  # HF recomputes the table when absent
        if config.decoder.tie_word_embeddings:
            optional.add("decoder.lm_head.weight")
        check_shapes(tensors, expected, frozenset(optional))

        xp = device_module(device)
        np_dtype = DTYPES[dtype]
        flat = {name: xp.asarray(to_float(array, kind, np_dtype)) for name, (array, kind) in tensors.items()}
        embed = "decoder.model.decoder.embed_tokens.weight"
        if config.decoder.tie_word_embeddings:
            # HF ties lm_head to embed_tokens; a file may still carry the (identical) copy.
            stored = flat.get("decoder.lm_head.weight")
            if stored is not None and not bool(xp.array_equal(stored, flat[embed])):
                raise WeightsError(f"{folder}: config.json ties lm_head to embed_tokens but the checkpoint stores "
                                   "a different lm_head.weight")
            flat["decoder.lm_head.weight"] = flat[embed]
        table_key = "decoder.model.decoder.embed_positions.weights"
        table = flat.pop(table_key, None)
        if table is None:
            d = config.decoder
            table = dec.sinusoidal_table(d.max_target_positions + dec.POSITION_OFFSET, d.d_model, d.pad_token_id)
            table = xp.asarray(table.astype(np_dtype))
        tokenizer = Tokenizer.from_folder(folder)
        return cls(
            config=config,
            params=unflatten(flat),
            processor=Processor(FeatureExtractor.from_file(folder / "preprocessor_config.json"), tokenizer),
            tokenizer=tokenizer,
            generation_config=GenerationConfig.from_model_folder(folder, config.raw),
            positions_table=table,
            dtype=np_dtype,
            xp=xp,
        )

    # --- the forward pass ------------------------------------------------------------------

    def _inputs(self, input_values, attention_mask):
        """Validate and place model inputs: (B, N) float, optional (B, N) 0/1 mask."""
        xp = self.xp
        values = np.asarray(to_numpy(input_values))
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2:
            raise ValueError(f"input_values must be (B, N), got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("input_values contain NaN or inf")
        mask = None
        if attention_mask is not None:
            mask = np.asarray(to_numpy(attention_mask))
            if mask.ndim == 1:
                mask = mask[None]
            if mask.shape != values.shape:
                raise ValueError(f"attention_mask {mask.shape} does not match input_values {values.shape}")
            mask = xp.asarray(mask.astype(np.int64))
        return xp.asarray(values.astype(self.dtype)), mask

    def encode(self, input_values, attention_mask=None, record: dict | None = None):
        """Speech -> decoder-width frames (B, T, C_dec) and the frame keep-mask (B, T) or None."""
        values, mask = self._inputs(input_values, attention_mask)
        hidden, frames = enc.encode(self.params.encoder, values, mask, self.config.encoder, record)  # (B, T, C_enc)
        if self.config.has_enc_to_dec_proj:
            hidden = linear(self.params.enc_to_dec_proj, hidden)  # (B, T, C_dec)
            record_to(record, "enc_to_dec_proj", hidden)
        return hidden, frames

    def __call__(self, input_values, attention_mask=None, decoder_input_ids=None, labels=None,
                 record: dict | None = None, output_attentions: bool = False) -> Seq2SeqOutput:
        """Teacher-forced forward. With ``labels`` (B, S) and no decoder_input_ids, the inputs are
        the labels shifted right behind the start token, and ``loss`` is HF's cross-entropy.

        ``labels`` are what the decoder should output: the target ids followed by ``</s>``, with no
        start token, padded with -100 (ignored by the loss): [[5, 6, 2], [7, 2, -100]].
        ``output_attentions=True`` adds every layer's attention probabilities, as HF's
        ``encoder_attentions``, ``decoder_attentions`` and ``cross_attentions``. ``record`` (a dict)
        receives every named activation and attention map under its HF module path.
        """
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels")
            pad, start = self.config.pad_token_id, self.config.decoder_start_token_id
            if pad is None or start is None:
                raise ValueError("config.json needs pad_token_id and decoder_start_token_id "
                                 "to build decoder inputs from labels")
            decoder_input_ids = shift_tokens_right(np.asarray(labels, dtype=np.int64), pad, start)
        ids = self._token_ids(decoder_input_ids)
        if output_attentions and record is None:
            record = {}
        hidden, frames = self.encode(input_values, attention_mask, record)
        cache = dec.cross_attention_cache(self.params.decoder, hidden, self.config.decoder)
        cross_bias = None if frames is None else padding_bias(frames, hidden.dtype)  # (B, 1, 1, T)
        logits, _ = dec.decode(self.params.decoder, self.xp.asarray(ids), cache, cross_bias, self.positions_table,
                               self.config.decoder, record)
        logits = to_numpy(logits)
        to_host(record)
        loss = None if labels is None else cross_entropy(logits, np.asarray(labels, dtype=np.int64))
        out = Seq2SeqOutput(logits=logits, encoder_last_hidden_state=to_numpy(hidden), loss=loss)
        if output_attentions:
            def per_layer(template: str, count: int) -> tuple:
                return tuple(record[template.format(i)] for i in range(count))

            out.encoder_attentions = per_layer("encoder.encoder.layers.{}.attention.attn_weights",
                                               self.config.encoder.num_hidden_layers)
            out.decoder_attentions = per_layer("decoder.model.decoder.layers.{}.self_attn.attn_weights",
                                               self.config.decoder.decoder_layers)
            out.cross_attentions = per_layer("decoder.model.decoder.layers.{}.encoder_attn.attn_weights",
                                             self.config.decoder.decoder_layers)
        return out

    def _token_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        V = self.config.decoder.vocab_size
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.size == 0:
            raise ValueError(f"decoder ids must be a non-empty (B, S) integer array, got {ids.dtype} {ids.shape}")
        if ids.min() < 0 or ids.max() >= V:
            raise ValueError(f"decoder ids must lie in [0, {V}), got values from {ids.min()} to {ids.max()}")
        return ids.astype(np.int64)

    # --- generation -------------------------------------------------------------------------

    def generate(self, input_values, attention_mask=None, record: dict | None = None,
                 **generation_kwargs) -> np.ndarray:
        """Greedy or beam search -> ids (B * num_return_sequences, L), starting with the decoder start token.

        Defaults come from generation_config.json (or config.json); keyword arguments override
        them with HF's names: num_beams, max_length, max_new_tokens, min_length, length_penalty,
        early_stopping, num_return_sequences, eos_token_id, pad_token_id, ...
        With ``record``, the encoder's activations are stored under their HF paths and each
        decoding step's as "step.<t>.<HF path>" (rows = B * num_beams, in search order).
        """
        settings = SearchSettings.resolve(self.generation_config.update(**generation_kwargs))
        hidden, frames = self.encode(input_values, attention_mask, record)  # (B, T, C), (B, T)
        B = hidden.shape[0]
        cache = dec.cross_attention_cache(self.params.decoder, hidden, self.config.decoder)
        cross_bias = None if frames is None else padding_bias(frames, hidden.dtype)  # (B, 1, 1, T)
        if settings.num_beams > 1:
            # every input becomes K rows of (empty) self-attention cache; the cross K/V and the
            # padding bias stay one row per input, shared by its beams (decoder.cross_attend)
            cache = dec.reorder_cache(cache, np.repeat(np.arange(B), settings.num_beams))  # (B*K,) rows

        steps = 0

        def step(last_ids, cache):
            nonlocal steps
            step_record = None if record is None else {}
            logits, cache = dec.decode(self.params.decoder, self.xp.asarray(last_ids), cache, cross_bias,
                                       self.positions_table, self.config.decoder, step_record)
            for name, value in (step_record or {}).items():
                record[f"step.{steps}.{name}"] = value
            steps += 1
            return logits[:, -1], cache  # (rows, V)

        if settings.num_beams == 1:
            ids = greedy_search(step, cache, B, settings)
        else:
            ids, _ = beam_search(step, cache, B, settings)  # (B * num_return_sequences, L), scores
        to_host(record)
        return ids

    def translate(self, audio, sampling_rate: int | None = None, max_seconds: float | None = 20.0, progress=None,
                  **generation_kwargs) -> str:
        """An audio file path, or one mono waveform with its ``sampling_rate`` -> the decoded text of
        the best hypothesis.

        Audio longer than ``max_seconds`` (None: no limit) is cut at its quietest points into pieces
        of at most that length (``segment.quiet_cuts``); each is translated on its own and the texts
        are joined with spaces. ``progress(i, n, start_s, end_s)`` is called before each piece when
        there are several.
        """
        rate = self.processor.sampling_rate
        samples = waveform(audio, sampling_rate, rate)
        pieces = [(0, len(samples))] if max_seconds is None else quiet_cuts(samples, rate, max_seconds)
        return " ".join(text for text in self._translate_pieces(samples, pieces, progress, generation_kwargs) if text)

    def segments(self, audio, sampling_rate: int | None = None, min_pause: float = 0.5,
                 max_seconds: float | None = 20.0, progress=None, **generation_kwargs) -> list[dict]:
        """A recording of separate utterances, split at pauses of at least ``min_pause`` seconds
        (``segment.speech_segments``; an utterance longer than ``max_seconds`` is cut further at
        its quietest points), each translated on its own.
        -> [{"start": seconds, "end": seconds, "text": ...}, ...] in order; [] for silence."""
        rate = self.processor.sampling_rate
        samples = waveform(audio, sampling_rate, rate)
        pieces = speech_segments(samples, rate, min_pause, max_seconds)
        texts = self._translate_pieces(samples, pieces, progress, generation_kwargs)
        return [{"start": round(int(start) / rate, 3), "end": round(int(end) / rate, 3), "text": text}
                for (start, end), text in zip(pieces, texts)]

    def _translate_pieces(self, samples: np.ndarray, pieces, progress, generation_kwargs) -> list[str]:
        """Translate samples[start:end] for each (start, end) of ``pieces``, one at a time: memory
        stays that of one piece, however long the recording."""
        rate = self.processor.sampling_rate
        texts = []
        for i, (start, end) in enumerate(pieces):
            if progress is not None and len(pieces) > 1:
                progress(i, len(pieces), start / rate, end / rate)
            inputs = self.processor(samples[start:end], sampling_rate=rate)
            ids = self.generate(inputs["input_values"], inputs.get("attention_mask"), **generation_kwargs)
            texts.append(self.tokenizer.decode(ids[0], skip_special_tokens=True))
        return texts


def load(path: str | Path, dtype: str = "float32", device: str = "cpu", revision: str | None = None) -> Model:
    """Load a model: a HF-layout folder, or a hub id such as "facebook/s2t-wav2vec2-large-en-de".

    A folder holds config.json, preprocessor_config.json, vocab.json (+ merges.txt, ...) and the
    weights as model.safetensors or pytorch_model.bin, single or sharded. ``dtype`` is the compute
    dtype, "float32" (as HF) or "float64" (a more exact reference).
    """
    if isinstance(path, str) and not Path(path).exists():
        shipped = shipped_model(path)
        if shipped is not None:
            path = shipped
        elif not looks_like_a_path(path):
            path = from_hub(path, revision=revision)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such model folder")
    return Model.from_folder(path, dtype=dtype, device=device)


DEFAULT_MODEL_NAME = "numbers-en-de"  # the demo model every command uses when no model is given


def shipped_model(name: str) -> Path | None:
    """The folder of a model shipped with minis2t2, by name ("numbers-en-de"), or None.

    A wheel (or a non-editable install) carries the repository's weights/ folder as package data
    in minis2t2/weights/; an editable install or a checkout finds weights/ beside the package.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    package = Path(__file__).resolve().parent
    for root in (package / "weights", package.parent / "weights"):
        if (root / name / "config.json").is_file():
            return root / name
    return None


def default_model() -> Path:
    """The shipped demo model's folder."""
    folder = shipped_model(DEFAULT_MODEL_NAME)
    if folder is None:
        raise FileNotFoundError(f"no model given and the shipped {DEFAULT_MODEL_NAME} was not found "
                                "(weights/ is missing from this install); pass --model DIR")
    return folder


def looks_like_a_path(name: str) -> bool:
    """A local path rather than a hub id "org/name": it starts with "." or "~", has more or fewer
    than one "/" (or a backslash), or its first part is an existing folder ("weights/typo")."""
    first = name.split("/")[0]
    return name.startswith((".", "~", "/")) or name.count("/") != 1 or "\\" in name or Path(first).is_dir()
