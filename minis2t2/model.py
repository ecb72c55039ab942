"""SpeechEncoderDecoderModel: the encoder, the glue and the decoder, the loss, and generation.

Loading lives in loading.py, long audio in transcribe.py.

Dimension legend: B batch, N samples, T encoder frames, S decoder steps, C channels, V vocabulary.

    input_values (B, N) --encoder--> (B, T, C_enc) --enc_to_dec_proj?--> (B, T, C_dec)
    decoder_input_ids (B, S) + that --decoder--> logits (B, S, V)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import decoder as dec
from . import encoder as enc
from .backend import to_numpy
from .checkpoint import save_pretrained
from .config import ModelConfig
from .encoder import FrameTiming, frame_timing
from .generation import GenerationConfig, SearchSettings, beam_search, greedy_search
from .layers import linear, linear_backward, log_softmax, padding_bias, prefixed, record_to, softmax
from .processor import IGNORE_INDEX, Processor
from .tokenizer import Tokenizer
from .training import Training
from .transcribe import segments, translate
from .weights import WEIGHT_NORM_ALIASES, Tree, flatten, unflatten


class ModelOutput:
    """What transformers' ModelOutput adds to a dataclass: ``out[0]`` (the fields that are not None,
    in order), ``out["logits"]``, ``keys()`` and ``to_tuple()``."""

    def to_tuple(self) -> tuple:
        return tuple(value for _, value in self.items())

    def items(self) -> list:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def keys(self) -> list:
        return [name for name, _ in self.items()]

    def __getitem__(self, key):
        return dict(self.items())[key] if isinstance(key, str) else self.to_tuple()[key]


@dataclass
class Seq2SeqOutput(ModelOutput):
    """transformers' Seq2SeqLMOutput, its fields in its order."""

    loss: float | None = None
    logits: np.ndarray | None = None  # (B, S, V)
    # With output_hidden_states=True: the input of the first layer, then each layer's output
    # (transformers' convention; a pre-LN encoder's last entry is after its final LayerNorm)
    decoder_hidden_states: tuple | None = None  # (B, S, C_dec) x (decoder layers + 1)
    # With output_attentions=True, one array of attention probabilities per layer, as HF returns them:
    decoder_attentions: tuple | None = None  # (B, H, S, S) per decoder layer, causal self-attention
    cross_attentions: tuple | None = None  # (B, H, S, T) per decoder layer, over the encoder frames
    encoder_last_hidden_state: np.ndarray | None = None  # (B, T, C_dec), after enc_to_dec_proj as in HF
    encoder_hidden_states: tuple | None = None  # (B, T, C_enc) x (encoder layers + 1), before enc_to_dec_proj
    encoder_attentions: tuple | None = None  # (B, H, T, T) per encoder layer


@dataclass
class GenerateOutput(ModelOutput):
    """``generate(..., return_dict_in_generate=True)``: transformers' GenerateEncoderDecoderOutput /
    GenerateBeamEncoderDecoderOutput, the fields minis2t2 fills."""

    sequences: np.ndarray  # (B * num_return_sequences, L)
    sequences_scores: np.ndarray | None = None  # beam search: each returned hypothesis's length-penalised score
    scores: tuple | None = None  # output_scores: per step, the processed scores (greedy: logits; beam: log-probs)


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


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Gradient of ``cross_entropy`` (mean over the M labelled positions) with respect to the
    logits: (softmax(logits) - onehot(label)) / M where labelled, 0 at -100.   (B, S, V) -> (B, S, V)"""
    keep = labels != IGNORE_INDEX  # (B, S)
    d = softmax(logits)  # (B, S, V)
    d[keep, labels[keep]] -= 1.0
    d *= keep[..., None] / max(int(keep.sum()), 1)
    return d


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

    def encode(self, input_values, attention_mask=None, record: dict | None = None, training: Training | None = None):
        """Speech -> decoder-width frames (B, T, C_dec) and the frame keep-mask (B, T) or None."""
        values, mask = self._inputs(input_values, attention_mask)
        hidden, frames = enc.encode(self.params.encoder, values, mask, self.config.encoder, record,
                                    training)  # (B, T, C_enc)
        if self.config.has_enc_to_dec_proj:
            hidden = linear(self.params.enc_to_dec_proj, hidden)  # (B, T, C_dec)
            record_to(record, "enc_to_dec_proj", hidden)
        return hidden, frames

    def __call__(self, input_values, attention_mask=None, decoder_input_ids=None, labels=None,
                 record: dict | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
                 training: Training | None = None) -> Seq2SeqOutput:
        """Teacher-forced forward. With ``labels`` (B, S) and no decoder_input_ids, the inputs are
        the labels shifted right behind the start token, and ``loss`` is HF's cross-entropy.

        ``labels`` are what the decoder should output: the target ids followed by ``</s>``, with no
        start token, padded with -100 (ignored by the loss): [[5, 6, 2], [7, 2, -100]].
        ``output_attentions=True`` adds every layer's attention probabilities, as HF's
        ``encoder_attentions``, ``decoder_attentions`` and ``cross_attentions``;
        ``output_hidden_states=True`` HF's ``encoder_hidden_states`` and ``decoder_hidden_states``
        (the first layer's input, then every layer's output). ``record`` (a dict)
        receives every named activation and attention map under its HF module path.
        ``training`` (a ``Training``, training.py) runs in transformers' train() mode: dropout,
        LayerDrop and SpecAugment, drawn from its generator or injected; None is eval() mode.
        """
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels")
            pad, start = self.config.pad_token_id, self.config.decoder_start_token_id
            if pad is None or start is None:
                raise ValueError("config.json needs pad_token_id and decoder_start_token_id "
                                 "to build decoder inputs from labels")
            labels = np.asarray(labels, dtype=np.int64)
            self._check_batch(labels, np.atleast_2d(np.asarray(to_numpy(input_values))))
            decoder_input_ids = shift_tokens_right(labels, pad, start)
        ids = self._token_ids(decoder_input_ids)
        if (output_attentions or output_hidden_states) and record is None:
            record = {}
        hidden, frames = self.encode(input_values, attention_mask, record, training)
        cache = dec.cross_attention_cache(self.params.decoder, hidden, self.config.decoder)
        cross_bias = None if frames is None else padding_bias(frames, hidden.dtype)  # (B, 1, 1, T)
        logits, _ = dec.decode(self.params.decoder, self.xp.asarray(ids), cache, cross_bias, self.positions_table,
                               self.config.decoder, record, training)
        logits = to_numpy(logits)
        to_host(record)
        loss = None if labels is None else cross_entropy(logits, np.asarray(labels, dtype=np.int64))
        out = Seq2SeqOutput(logits=logits, encoder_last_hidden_state=to_numpy(hidden), loss=loss)

        def per_layer(template: str, count: int) -> tuple:
            return tuple(record[template.format(i)] for i in range(count))

        if output_hidden_states:
            enc = self.config.encoder
            names = ["encoder.encoder.layers.0.input"] + [f"encoder.encoder.layers.{i}" for i in
                                                          range(enc.num_hidden_layers)]
            if enc.do_stable_layer_norm:  # transformers' last entry is after the final LayerNorm
                names[-1] = "encoder.encoder.layer_norm"
            out.encoder_hidden_states = tuple(record[name] for name in names)
            out.decoder_hidden_states = (record["decoder.model.decoder.layers.0.input"],) + \
                per_layer("decoder.model.decoder.layers.{}", self.config.decoder.decoder_layers)
        if output_attentions:
            out.encoder_attentions = per_layer("encoder.encoder.layers.{}.attention.attn_weights",
                                               self.config.encoder.num_hidden_layers)
            out.decoder_attentions = per_layer("decoder.model.decoder.layers.{}.self_attn.attn_weights",
                                               self.config.decoder.decoder_layers)
            out.cross_attentions = per_layer("decoder.model.decoder.layers.{}.encoder_attn.attn_weights",
                                             self.config.decoder.decoder_layers)
        return out

    def trainable_parameters(self) -> dict:
        """{name: array} for every trainable parameter, under the names of transformers'
        ``named_parameters()`` (as ``loss_and_grads`` names the gradients), the arrays the model
        computes with: an optimizer updates them in place.

        Loaded weights are read-only views of the checkpoint file; the first call copies them
        into arrays of their own (and ties lm_head to the copied embed_tokens again).
        """
        flat = flatten(self.params)
        if not all(getattr(getattr(a, "flags", None), "writeable", True) for a in flat.values()):
            tied = self.config.decoder.tie_word_embeddings
            flat = {name: array.copy() for name, array in flat.items()}
            if tied:
                flat["decoder.lm_head.weight"] = flat["decoder.model.decoder.embed_tokens.weight"]
            self.params = unflatten(flat)
        named = {}
        for name, array in flatten(self.params).items():
            if name == "decoder.lm_head.weight" and self.config.decoder.tie_word_embeddings:
                continue  # one parameter, listed once (under embed_tokens), as torch lists tied weights
            for hf_name, ours in WEIGHT_NORM_ALIASES.items():
                if name.endswith("pos_conv_embed." + ours):
                    name = name[: -len(ours)] + hf_name
            named[name] = array
        return named

    def loss_and_grads(self, input_values, attention_mask=None, labels=None, record: dict | None = None,
                       freeze_feature_encoder: bool = False, training: Training | None = None,
                       encoder_loss=None) -> tuple[float, dict]:
        """The loss of ``model(..., labels=labels)`` and its gradient for every trainable parameter.

        -> (loss, {name: gradient}) with the names of transformers' ``named_parameters()`` for the
        same model: tied weights once (under embed_tokens), the positional conv's weight norm as
        ``...parametrizations.weight.original0`` (g) and ``original1`` (v); each gradient has its
        parameter's shape and the model's dtype. Eval mode (no dropout, LayerDrop or SpecAugment)
        unless ``training`` (a ``Training``) is given: then its masks, the same in the forward and
        the backward pass, as torch's autograd keeps them.
        ``freeze_feature_encoder=True`` leaves out the conv feature encoder's parameters and skips
        its backward pass, as transformers' ``freeze_feature_encoder()`` does through autograd.
        ``encoder_loss``: an auxiliary loss on the encoder's output, as joint CTC-attention training
        adds one (tools/demo/train.py's NumPy engine): a function (encoded (B, T, C_enc), frame
        keep-mask (B, T) or None) -> (its loss, d_encoded (B, T, C_enc)). Its loss is added to the
        one returned and its gradient to the decoder's where both reach the encoder's output; the
        function keeps the gradients of its own parameters (a head) itself.

        The forward keeps each layer's input (``encode_keeping_inputs``, ``decode_keeping_inputs``);
        the backward pass mirrors it layer by layer (``*_backward`` beside each forward in
        layers.py, encoder.py, decoder.py), each recomputing its layer's insides from that input.
        ``record`` receives the gradient of the loss with respect to each layer's output, as
        "grad." + the activation's HF module path (the decoder's for all steps at once).
        """
        if labels is None:
            raise ValueError("loss_and_grads needs labels: the ids the decoder should output, -100 where ignored")
        labels = np.asarray(labels, dtype=np.int64)
        pad, start = self.config.pad_token_id, self.config.decoder_start_token_id
        values, mask = self._inputs(input_values, attention_mask)
        self._check_batch(labels, values)
        ids = self.xp.asarray(self._token_ids(shift_tokens_right(labels, pad, start)))  # (B, S)
        # the forward, keeping each layer's input for the backward (enc/dec *_keeping_inputs)
        encoded, frames, encoder_saved = enc.encode_keeping_inputs(self.params.encoder, values, mask, self.config.encoder,
                                                                   training, not freeze_feature_encoder)  # (B, T, C_enc)
        hidden = linear(self.params.enc_to_dec_proj, encoded) if self.config.has_enc_to_dec_proj else encoded
        cross_bias = None if frames is None else padding_bias(frames, hidden.dtype)  # (B, 1, 1, T)
        logits, decoder_saved = dec.decode_keeping_inputs(self.params.decoder, ids, hidden, cross_bias,
                                                          self.positions_table, self.config.decoder, training)
        logits = to_numpy(logits)  # the loss and its first gradient on the host, with the labels
        loss = cross_entropy(logits, labels)
        d_logits = self.xp.asarray(cross_entropy_backward(logits, labels))  # (B, S, V)
        # the backward, last layer first
        d_hidden, grads = dec.decode_backward(self.params.decoder, ids, hidden, cross_bias, decoder_saved,
                                              self.config.decoder, d_logits, record, training)
        grads = prefixed("decoder", grads)
        # when LayerDrop skips every decoder layer, nothing reaches the encoder: torch gives it no gradient
        reaches_encoder = training is None or not all(
            training.draws.get(f"decoder.model.decoder.layers.{i}.layerdrop") for i in range(self.config.decoder.decoder_layers))
        if reaches_encoder and self.config.has_enc_to_dec_proj:
            record_to(record, "grad.enc_to_dec_proj", d_hidden)
            d_hidden, g = linear_backward(self.params.enc_to_dec_proj, encoded, d_hidden)
            grads |= prefixed("enc_to_dec_proj", g)
        if encoder_loss is not None:  # d(loss + auxiliary)/d encoded = the decoder's part + the auxiliary's
            auxiliary, d_auxiliary = encoder_loss(encoded, frames)
            loss += auxiliary
            d_hidden = d_auxiliary if not reaches_encoder else d_hidden + d_auxiliary
            reaches_encoder = True
        if reaches_encoder:
            grads |= prefixed("encoder", enc.encode_backward(self.params.encoder, encoder_saved, self.config.encoder,
                                                             d_hidden, record, training))
        to_host(record)
        return loss, {name: to_numpy(g).astype(self.dtype) for name, g in grads.items()}

    @staticmethod
    def _check_batch(labels: np.ndarray, values) -> None:
        """Labels and audio must describe the same batch: one row of labels per input."""
        if labels.ndim != 2 or labels.shape[0] != values.shape[0]:
            raise ValueError(f"labels {labels.shape} do not match the audio's batch of {values.shape[0]}: "
                             "give one row of labels per input (processor(audio, text=[...]) makes them)")

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

    def generate(self, inputs=None, attention_mask=None, record: dict | None = None, *, input_values=None,
                 return_dict_in_generate: bool = False, output_scores: bool = False, **generation_kwargs):
        """Greedy or beam search -> ids (B * num_return_sequences, L), starting with the decoder start token.

        ``inputs`` (or ``input_values=``, as transformers takes either) are the processor's
        input values (B, N). Defaults come from generation_config.json (or config.json); keyword
        arguments override them with HF's names: num_beams, max_length, max_new_tokens,
        min_length, length_penalty, early_stopping, num_return_sequences, eos_token_id,
        pad_token_id, ... ``return_dict_in_generate=True`` returns a ``GenerateOutput`` instead:
        ``sequences``, for beam search ``sequences_scores``, and with ``output_scores=True`` the
        ``scores`` of every step, as transformers computes them.
        With ``record``, the encoder's activations are stored under their HF paths and each
        decoding step's as "step.<t>.<HF path>" (rows = B * num_beams, in search order).
        """
        if (inputs is None) == (input_values is None):
            raise ValueError("generate() takes the audio's input values once: as inputs= (or the first argument) "
                             "or as input_values=")
        settings = SearchSettings.resolve(self.generation_config.update(**generation_kwargs))
        hidden, frames = self.encode(inputs if input_values is None else input_values, attention_mask,
                                     record)  # (B, T, C), (B, T)
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

        scores = [] if output_scores else None
        sequence_scores = None
        if settings.num_beams == 1:
            ids = greedy_search(step, cache, B, settings, scores)
        else:
            ids, sequence_scores = beam_search(step, cache, B, settings, scores)  # (B * num_return_sequences, L)
        to_host(record)
        if not return_dict_in_generate:
            return ids
        return GenerateOutput(sequences=ids, sequences_scores=sequence_scores,
                              scores=None if scores is None else tuple(scores))

    # --- long audio (transcribe.py) and saving (checkpoint.py): functions bound as methods ---

    translate = translate
    segments = segments
    save_pretrained = save_pretrained
