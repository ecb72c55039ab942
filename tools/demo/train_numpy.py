"""The demo recipe's NumPy engine: ``python -m tools.demo.train --engine numpy`` trains the same
phases on the same batches as the torch engine, with minis2t2 alone (no torch, no transformers).

One step, as the torch engine's (tools/demo/train.py, train_phase):

    loss     = the decoder's cross-entropy  +  ctc_weight · CTC(linear head on the encoder's output)
               (model.loss_and_grads with encoder_loss: ctc_term; minis2t2/ctc.py)
    masks    dropout and SpecAugment drawn for the step (minis2t2.training.Training, seeded by the
             phase's seed and the step: NumPy's generator, so not torch's masks, but the same rates)
    clip     the model's gradients to global norm 1 (the CTC head's are not clipped, as in torch)
    AdamW    weight decay 0.01 on the model and the head; the feature encoder frozen from step
             freeze_feature_encoder_after on (no gradient, no update, as torch after freezing)
    lr       peak · warmup_cosine(step)

Batches come from the same ``Batches`` (their draws depend only on the phase's seed and the step)
made one process ahead, as torch's DataLoader worker makes them. Every 1000 steps the run checks
its dev clips and saves OUT: the model (HF layout), and beside it numpy_engine.json (phase, step,
history) and numpy_engine.safetensors (AdamW's moments, the CTC head and its moments), from which
the same command resumes after an interrupt at the step it had saved; the resumed run draws what
the uninterrupted one would have (tests/test_demo_numpy_engine.py).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import platform
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import minis2t2
from minis2t2.audio import FeatureExtractor
from minis2t2.backend import to_numpy
from minis2t2.checkpoint import SAFETENSORS_DTYPES
from minis2t2.ctc import ctc_loss_and_grad
from minis2t2.generation import GenerationConfig
from minis2t2.initialisation import random_init
from minis2t2.layers import linear, linear_backward
from minis2t2.optim import FEATURE_ENCODER, AdamW, clip_grad_norm, warmup_cosine
from minis2t2.tokenizer import Tokenizer
from minis2t2.training import Training
from minis2t2.weights import Tree, read_safetensors, write_safetensors
from tools.demo.augment import SR, pad_silence
from tools.demo.spell import german

STATE = "numpy_engine.json"  # the run's phase, step and history
MOMENTS = "numpy_engine.safetensors"  # AdamW's m and v per parameter, the CTC head
CHECK_EVERY = 1000  # steps between dev checks and checkpoints, as the torch engine
PREFETCH = 4  # batches made ahead, as the torch engine's prefetch_factor


def new_model(folder: Path, vocab_size: int, frame_ms: int, seed: int):
    """A fresh model of the recipe's settings (train.model_configs), drawn as transformers draws one,
    with the tokenizer in ``folder``."""
    from tools.demo.train import GENERATION, model_configs

    encoder, decoder = model_configs(vocab_size, frame_ms)
    model = random_init(encoder, decoder, seed=seed, tokenizer=folder,
                        feature_extractor=FeatureExtractor(sampling_rate=SR, return_attention_mask=True))
    model.generation_config = GenerationConfig.from_dict(GENERATION)
    return model


def new_ctc_head(hidden: int, symbols: int, rng: np.random.Generator) -> Tree:
    """The CTC head (symbols = the words + the blank), drawn as torch's nn.Linear default draws one:
    weight and bias from U(-1/√hidden, 1/√hidden)."""
    bound = 1 / math.sqrt(hidden)
    return Tree(weight=rng.uniform(-bound, bound, (symbols, hidden)).astype(np.float32),
                bias=rng.uniform(-bound, bound, symbols).astype(np.float32))


def recipe_step(model, head: Tree, optimizer: AdamW, batch, phase: dict, k: int) -> dict:
    """Step k (0-based) of a phase on ``batch`` (a Batches item): the loss, its gradients, the
    clipped AdamW update. -> {"decoder_loss", "ctc_loss", "lr"}"""
    values, mask, labels, words = batch
    weight = phase["ctc_weight"]
    ctc = {"loss": 0.0, "grads": {}}

    def ctc_term(encoded, frame_mask):
        """weight · CTC of the words on the head's logits; -> (that, its gradient for ``encoded``)."""
        encoded = to_numpy(encoded)  # (B, T, C_enc)
        frames = frame_mask.sum(axis=1) if frame_mask is not None else np.full(len(encoded), encoded.shape[1])
        loss, d_logits = ctc_loss_and_grad(linear(head, encoded), to_numpy(frames), words)  # d_logits (B, T, V)
        d_encoded, grads = linear_backward(head, encoded, weight * d_logits)
        ctc["loss"], ctc["grads"] = loss, grads
        return weight * loss, model.xp.asarray(d_encoded)

    frozen = k >= phase["freeze_feature_encoder_after"]
    training = Training(seed=[phase["seed"], k, 1])  # the step's dropout and SpecAugment masks (not the batch's draws)
    loss, grads = model.loss_and_grads(values, mask, labels=labels, freeze_feature_encoder=frozen, training=training,
                                       encoder_loss=ctc_term if weight else None)
    clip_grad_norm(grads, 1.0)  # the model's gradients only, as torch's clip_grad_norm_(model.parameters())
    grads |= {f"ctc_head.{name}": g for name, g in ctc["grads"].items()}
    lr = phase["lr"] * warmup_cosine(k, phase["warmup"], phase["steps"])
    params = model.trainable_parameters() | {"ctc_head.weight": head.weight, "ctc_head.bias": head.bias}
    optimizer.step(params, grads, lr=lr, frozen=(FEATURE_ENCODER,) if frozen else ())
    return {"decoder_loss": loss - weight * ctc["loss"], "ctc_loss": ctc["loss"], "lr": lr}


def dev_exact_match(model, dev_items: list, dev_clips: list) -> float:
    """The share of dev clips (0.3 s of silence around each) whose greedy output is their German text."""
    dev = list(range(0, len(dev_items), 3))
    waves = [pad_silence(dev_clips[i].astype(np.float32) / 32768, np.random.default_rng(i), 0.3) for i in dev]
    inputs = model.processor(waves, sampling_rate=SR)
    ids = model.generate(input_values=inputs["input_values"], attention_mask=inputs["attention_mask"])
    texts = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return float(np.mean([t == german(dev_items[i]["number"]) for t, i in zip(texts, dev)]))


BATCHES = None  # the phase's Batches, inherited by the forked process that makes them


def make_batch(k: int):
    return BATCHES[k]


def batches_from(batches, first: int, last: int):
    """(k, batches[k]) for k in [first, last), each made in a second process while steps run."""
    global BATCHES
    BATCHES = batches
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = deque(pool.submit(make_batch, k) for k in range(first, min(first + PREFETCH, last)))
        for k in range(first, last):
            batch = pending.popleft().result()
            if k + PREFETCH < last:
                pending.append(pool.submit(make_batch, k + PREFETCH))
            yield k, batch


def save(model, head: Tree, optimizer: AdamW, state: dict, out: Path) -> None:
    """The model folder, then what resuming needs beside it: the head, AdamW's moments, the state."""
    model.save_pretrained(out)
    arrays = optimizer.moments() | {"head.weight": head.weight, "head.bias": head.bias}
    write_safetensors(out / MOMENTS, {n: (to_numpy(a), SAFETENSORS_DTYPES[a.dtype.name]) for n, a in arrays.items()})
    (out / STATE).write_text(json.dumps(state | {"optimizer_steps": optimizer.steps}, indent=1) + "\n")


def restore(head: Tree, optimizer: AdamW, state: dict, out: Path) -> None:
    """The head's weights and AdamW's state as ``save`` left them."""
    arrays = {name: np.array(array) for name, (array, _) in read_safetensors(out / MOMENTS).items()}
    head.weight[...], head.bias[...] = arrays["head.weight"], arrays["head.bias"]
    optimizer.load_moments(arrays, state["optimizer_steps"])


def train_phase(model, n: int, phase: dict, batches, dev_items, dev_clips, out: Path, state: dict, log=print) -> dict:
    """Phase ``n`` on ``model`` (in place) from ``state``'s step: 0, or where an interrupted run saved
    it; returns its training.json record."""
    head = new_ctc_head(model.config.encoder.hidden_size, len(batches.word_id) + 1,
                        np.random.default_rng([phase["seed"], 2]))
    optimizer = AdamW(lr=phase["lr"], weight_decay=0.01)
    if state["step"] > 0:
        restore(head, optimizer, state, out)
        log(f"phase {n}: resuming at step {state['step'] + 1} of {phase['steps']}")
    losses, start = [], time.time() - state["seconds"]
    for k, batch in batches_from(batches, state["step"], phase["steps"]):
        if k == phase["freeze_feature_encoder_after"]:
            log(json.dumps({"step": k + 1, "feature_encoder": "frozen"}))
        row = recipe_step(model, head, optimizer, batch, phase, k)
        if not math.isfinite(row["decoder_loss"]):
            raise FloatingPointError(f"phase {n}: the loss became {row['decoder_loss']} at step {k + 1}")
        losses.append((row["decoder_loss"], row["ctc_loss"]))
        step = k + 1
        if step % 100 == 0:
            att, ctc = np.mean(losses[-100:], axis=0)
            row = {"step": step, "decoder_loss": round(float(att), 4), "ctc_loss": round(float(ctc), 4),
                   "lr": row["lr"], "seconds": round(time.time() - start)}
            log(json.dumps(row))
            state["history"].append(row)
        if step % CHECK_EVERY == 0 or step == phase["steps"]:
            acc = dev_exact_match(model, dev_items, dev_clips)
            log(json.dumps({"step": step, "dev_exact_match": acc}))
            state["history"].append({"step": step, "dev_exact_match": acc})
            state |= {"step": step, "seconds": time.time() - start}
            save(model, head, optimizer, state, out)  # a usable model, and a run that can resume, at every check
    return {**phase, "wall_time_s": round(state["seconds"]), "history": state["history"], "engine": "numpy",
            "numpy": np.__version__, "minis2t2": minis2t2.__version__, "cpu": platform.processor() or platform.machine()}


def read_tokenizer(folder: Path) -> Tokenizer:
    return Tokenizer.from_folder(folder)


def run(phases: list[int], settings: dict, args, data: dict, phase_data, log=print) -> None:
    """The NumPy engine's main: each phase of ``phases`` in turn into ``args.out``, resuming an
    interrupted run of the same phases and settings found there."""
    from tools.demo.train import P_NON_SPEECH, P_WORD_BANK, Batches, labels_and_words, make_tokenizer

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    state, model = None, None
    if (out / STATE).is_file():
        state = json.loads((out / STATE).read_text())
        if state.get("settings") != {str(n): settings[n] for n in phases}:
            raise SystemExit(f"{out / STATE}: an interrupted run of other phases or settings ("
                             f"{state.get('settings')}); give another --out or delete that file to start over")
        model = minis2t2.load(out)
        log(f"{out}: resuming phase {state['phase']} after step {state['step']}")
    tokenizer = make_tokenizer(out, read_tokenizer)
    previous = json.loads((args.init / "training.json").read_text()) if args.init else None
    done = None  # the record of the last phase the interrupted run finished, if any
    if state and (out / "training.json").is_file():
        done = json.loads((out / "training.json").read_text())
        done = done if done.get("engine") == "numpy" and done.get("phase") in phases else None
    for n in phases:
        phase = settings[n]
        if done and done["phase"] >= n:  # finished and recorded before the interrupt
            previous = done if done["phase"] == n else previous
            continue
        if model is None:
            model = minis2t2.load(args.init) if args.init else new_model(out, tokenizer.vocab_size, args.frame_ms or 40,
                                                                         phase["seed"])
        items, clips, bank_items, bank = phase_data(data, phase)
        labels_of, word_id = labels_and_words(tokenizer)
        batches = Batches(clips, items, bank, bank_items, labels_of, word_id,
                          model.processor.feature_extractor, args.batch_size, phase["steps"], phase["seed"],
                          phase["clean_start"], phase["tight_trim"], phase.get("long_silence_batches", 0.0))
        log(json.dumps({"phase": n, **phase, "engine": "numpy"}))
        resume = state if state and state["phase"] == n else None  # (at its last step if only its record is missing)
        fresh = {"phase": n, "step": 0, "seconds": 0.0, "history": [], "settings": {str(m): settings[m] for m in phases}}
        record = train_phase(model, n, phase, batches, data["dev_items"], data["dev_clips"], out, resume or fresh, log)
        record = {"phase": n, **record, "batch_size": args.batch_size, "train_clips": len(clips),
                  "word_bank_clips": len(bank), "p_word_bank": P_WORD_BANK, "p_non_speech": P_NON_SPEECH,
                  "frame_ms": 1000 * math.prod(model.config.encoder.conv_stride) // SR,
                  "init": str(args.init) if args.init and n == phases[0] else None, "previous": previous}
        (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
        previous, state = record, None
        log(f"phase {n}: saved {out}")
