"""Fine-tuning a model on a folder of recordings and their texts, in NumPy (``minis2t2 finetune``).

    DATA/transcripts.tsv    one line per clip: FILE<TAB>TEXT (FILE relative to DATA)
    DATA/...                the audio files, any format and rate ``load_audio`` reads

Each step draws a batch, computes ``loss_and_grads`` (in eval mode, or with ``train_mode`` with
dropout, LayerDrop and SpecAugment masks drawn for that step from the seed), clips the gradients' global norm and takes
an AdamW step on a warm-up + linear-decay schedule (minis2t2/optim.py). Every ``save_every``
steps and at the end, OUT holds an HF-layout model folder (transformers'
``SpeechEncoderDecoderModel.from_pretrained`` and ``minis2t2.load`` both read it) plus the
optimiser's state, so that running the same command again after an interrupt resumes where it
stopped. A line that cannot be used (no tab, no text, an unreadable file, a text the tokenizer
cannot spell) is reported with its line number and skipped.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio import load_audio
from .checkpoint import SAFETENSORS_DTYPES
from .errors import InputError
from .loading import load, model_folder
from .optim import FEATURE_ENCODER, AdamW, clip_grad_norm, linear_warmup_decay
from .training import Training
from .weights import read_safetensors, write_safetensors

STATE = "trainer_state.json"  # steps done, losses, settings
OPTIMIZER = "optimizer.safetensors"  # AdamW's m and v per parameter
@dataclass(frozen=True)
class Settings:
    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 8
    warmup: int = 10
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    freeze_feature_encoder: bool = False
    seed: int = 0
    save_every: int = 50
    train_mode: bool = False  # dropout, LayerDrop and SpecAugment (training.py); eval mode otherwise


def read_clips(data: Path, model, warn) -> list[tuple[str, np.ndarray, str]]:
    """(file name, waveform at the model's rate, text) for every usable line of DATA/transcripts.tsv;
    each unusable line is passed to ``warn`` as one line naming it."""
    tsv = data / "transcripts.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv}: no such file (the data folder needs FILE<TAB>TEXT lines in it)")
    try:
        lines = tsv.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{tsv}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    tok, rate = model.tokenizer, model.processor.sampling_rate
    clips = []
    for number, line in enumerate(lines, 1):
        where = f"{tsv}:{number}"
        if not line.strip():
            continue
        if line.count("\t") != 1:
            warn(f"{where}: expected FILE<TAB>TEXT (one tab), got {line[:60]!r}; skipped")
            continue
        name, text = (part.strip() for part in line.split("\t"))
        if not name or not text:
            warn(f"{where}: the {'file name' if not name else 'text'} is empty; skipped")
            continue
        unknown = tok.unknown_pieces(text)
        if unknown:
            warn(f"{where}: the model's vocabulary cannot spell {text[:60]!r} (no token for {unknown[:3]}); skipped")
            continue
        try:
            audio = load_audio(data / name, rate)
        except (OSError, ValueError) as e:
            warn(f"{where}: {e}; skipped")
            continue
        clips.append((name, audio, text))
    if not clips:
        raise InputError(f"{tsv}: no usable line to train on")
    return clips


def resumable_state(state_file: Path, optimizer_file: Path) -> dict:
    """The state of an interrupted run, or an InputError naming the file when this version cannot
    resume from it (not JSON, or written by an older minis2t2 without the fields it needs)."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{state_file}: cannot resume from it ({e}); fine-tune into a new --out") from None
    needed = ["step", "losses"] + (["optimizer_steps"] if optimizer_file.is_file() else [])
    missing = [key for key in needed if not isinstance(state, dict) or key not in state]
    if missing:
        raise InputError(f"{state_file}: cannot resume from it (no {', '.join(missing)}: written by another "
                         "version of minis2t2?); fine-tune into a new --out")
    return state


def finetune(model_path, data: Path, out: Path, settings: Settings, log=print, warn=None) -> list[float]:
    """Fine-tune, or resume a run whose state is in OUT. -> the loss of every step so far."""
    warn = warn or (lambda message: print(f"minis2t2: {message}", file=sys.stderr))
    state_file = out / STATE
    resuming = state_file.is_file()
    state = resumable_state(state_file, out / OPTIMIZER) if resuming else \
        {"step": 0, "losses": [], "source": str(model_folder(model_path).resolve())}
    model = load(out if resuming else model_path)  # after the state check: a state it cannot resume loads nothing
    clips = read_clips(data, model, warn)
    params = model.trainable_parameters()
    optimizer = AdamW(lr=settings.lr, weight_decay=settings.weight_decay)
    if resuming and (out / OPTIMIZER).is_file():
        optimizer.load_moments({name: np.array(array) for name, (array, _) in read_safetensors(out / OPTIMIZER).items()},
                               state["optimizer_steps"])  # step counts per parameter: LayerDrop may have skipped some
    frozen = (FEATURE_ENCODER,) if settings.freeze_feature_encoder else ()
    log(f"{len(clips)} clips; {sum(a.size for a in params.values()) / 1e6:.2f} M parameters"
        f"{' (feature encoder frozen)' if frozen else ''}; steps {state['step'] + 1}-{settings.steps}")
    while state["step"] < settings.steps:
        step = state["step"]
        rng = np.random.default_rng([settings.seed, step])  # the batch of a step does not depend on resuming
        batch = rng.choice(len(clips), size=min(settings.batch_size, len(clips)), replace=False)
        inputs = model.processor([clips[i][1] for i in batch], sampling_rate=model.processor.sampling_rate,
                                 text=[clips[i][2] for i in batch])
        training = Training(seed=[settings.seed, step]) if settings.train_mode else None  # a step's masks, too
        loss, grads = model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"],
                                           freeze_feature_encoder=settings.freeze_feature_encoder, training=training)
        norm = clip_grad_norm(grads, settings.max_grad_norm)
        lr = settings.lr * linear_warmup_decay(step, settings.warmup, settings.steps)
        optimizer.step(params, grads, lr=lr, frozen=frozen)
        state["step"], state["losses"] = step + 1, state["losses"] + [loss]
        running = float(np.mean(state["losses"][-10:]))
        log(f"step {step + 1}/{settings.steps}  loss {loss:.4f}  (mean of the last 10: {running:.4f})  "
            f"grad norm {norm:.3f}  lr {lr:.2e}")
        if not math.isfinite(loss):
            raise InputError(f"the loss became {loss} at step {step + 1}: lower --lr")
        if state["step"] % settings.save_every == 0 or state["step"] == settings.steps:
            save_checkpoint(model, out, optimizer, state, settings)
    return state["losses"]


def save_checkpoint(model, out: Path, optimizer: AdamW, state: dict, settings: Settings) -> None:
    """The model folder, the optimiser's state and the progress, then the loss curve."""
    model.save_pretrained(out)
    write_safetensors(out / OPTIMIZER, {n: (a, SAFETENSORS_DTYPES[a.dtype.name]) for n, a in optimizer.moments().items()})
    (out / STATE).write_text(json.dumps(state | {"settings": asdict(settings), "optimizer_steps": optimizer.steps},
                                        indent=1))
    draw_losses(state["losses"], out / "loss.png")


def draw_losses(losses: list[float], path: Path) -> None:
    """The loss of every step, on a log axis, when matplotlib is installed (it is optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from .plots import COLORS, figure
    except ImportError:
        return
    fig, axes = figure(1, 1, width=6, height=3)
    ax = axes[0, 0]
    ax.semilogy(range(1, len(losses) + 1), losses, color=COLORS["decoder"], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
