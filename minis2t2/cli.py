"""The ``minis2t2`` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .encoder import min_samples
from .errors import InputError
from .loading import DEFAULT_MODEL_NAME, default_model, load


def _translate(args) -> int:
    """Translate every file (with --segments: every utterance of every file); a bad file is reported
    on stderr (or as a JSON error entry) and the others still run. Exit status 2 if any file failed."""
    model = load(args.model or default_model(), dtype=args.dtype, device=args.device)
    overrides = {}
    if args.num_beams is not None:
        overrides["num_beams"] = args.num_beams
    if args.max_new_tokens is not None:
        overrides["max_new_tokens"] = args.max_new_tokens
    max_seconds = args.max_seconds or None  # 0: no limit
    shortest = min_samples(model.config.encoder) / model.processor.sampling_rate  # one frame's receptive field
    if max_seconds is not None and max_seconds < shortest:
        raise InputError(f"--max-seconds {max_seconds:g}: pieces that short hold no encoder frame (the model needs "
                         f"at least {shortest:.3f} s); give a longer limit, or 0 for none")
    failed = 0
    for path in args.files:
        try:
            if args.segments:
                result = model.segments(path, min_pause=args.min_pause, max_seconds=max_seconds,
                                        progress=_progress(path), **overrides)
            else:
                result = model.translate(path, max_seconds=max_seconds, progress=_progress(path), **overrides)
        except (OSError, ValueError) as e:  # this file's fault: say so and go on with the next
            failed += 1
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            if args.json:
                print(json.dumps({"file": str(path), "error": message}, ensure_ascii=False))
            print(f"minis2t2: error: {message}", file=sys.stderr)
            continue
        if args.json:
            key = "segments" if args.segments else "text"
            print(json.dumps({"file": str(path), key: result}, ensure_ascii=False))
        elif args.segments:
            for segment in result:
                print(f"{path}\t{segment['start']:.2f}\t{segment['end']:.2f}\t{segment['text']}")
        else:
            print(f"{path}\t{result}")
    return 2 if failed else 0


def _progress(path):
    """Progress on stderr ("piece i/n (start-end s)") once a file has taken 2 s: at most a line a second."""
    started = last = time.monotonic()

    def report(i: int, n: int, start: float, end: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - started > 2 and now - last >= 1:
            last = now
            print(f"minis2t2: {path}: piece {i + 1}/{n} ({start:.1f}-{end:.1f} s)", file=sys.stderr, flush=True)
    return report


def _download(args) -> int:
    from .checkpoint import from_hub

    print(from_hub(args.repo_id, revision=args.revision))
    return 0


def _convert(args) -> int:
    from .checkpoint import convert

    print(convert(args.src, args.dst) / "model.safetensors")
    return 0


def _trace(args) -> int:
    from .trace import trace

    batch = len(args.audio) > 1
    labels = args.labels[0] if args.labels and len(args.labels) == 1 and not batch else args.labels  # trace checks counts
    _, meta = trace(args.audio if batch else args.audio[0], model=args.model, out=args.out, num_beams=args.num_beams,
                    max_new_tokens=args.max_new_tokens, dtype=args.dtype, device=args.device, labels=labels,
                    only=args.only)
    print(f"{args.out}: {len(json.loads(meta['order']))} tensors, text {meta['text']!r}")
    return 0


def _inspect(args) -> int:
    """Every named tensor of one translation (its trace) in model order, then the decoding steps."""
    import numpy as np

    from .layers import softmax
    from .trace import trace

    model = load(args.model or default_model(), dtype=args.dtype, device=args.device)
    tensors, meta = trace(args.audio, model=model, num_beams=args.num_beams)
    raw, rate, ids = tensors["input.raw"], model.processor.sampling_rate, tensors["output.ids"]
    print(f"{args.audio}: {len(raw)} samples = {len(raw) / rate:.2f} s at {rate} Hz")
    print(f"{'name':<62} {'shape':<18} {'min':>10} {'max':>10} {'mean':>10} {'std':>10}")
    for name, value in tensors.items():
        v = np.asarray(value, dtype=np.float64)
        print(f"{name:<62} {tuple(v.shape)!s:<18} {v.min():>10.4g} {v.max():>10.4g} {v.mean():>10.4g} "
              f"{v.std():>10.4g}")
    tok = model.tokenizer
    print("\ndecoding (row 0 of each step: the chosen token and the top 3 by probability)")
    t = 0
    while f"step.{t}.decoder.lm_head" in tensors:
        probs = softmax(np.asarray(tensors[f"step.{t}.decoder.lm_head"], dtype=np.float64)[0, -1])  # (V,)
        top = np.argsort(-probs)[:3]
        chosen = int(ids[0, t + 1]) if t + 1 < ids.shape[1] else None
        alternatives = "  ".join(f"{tok.decoder.get(int(i), tok.unk_token)!r} {probs[i]:.3f}" for i in top)
        picked = "" if chosen is None else f"{tok.decoder.get(chosen, tok.unk_token)!r:<14}"
        print(f"step {t:>2}: {picked} {alternatives}")
        t += 1
    print(f"\nids {ids[0].tolist()}\ntext {meta['text']!r}")
    return 0


def _compare(args) -> int:
    from .compare import compare

    result = compare(args.a, args.b, atol=args.atol, rtol=args.rtol, tolerances=dict(args.tolerance or []))
    print(json.dumps(result.to_json(), indent=1, allow_nan=False) if args.json else result)
    return 0 if result.ok else 1


def _finetune(args) -> int:
    from .finetune import Settings, finetune

    settings = Settings(steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                        warmup=args.warmup if args.warmup is not None else max(1, args.steps // 10),
                        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
                        freeze_feature_encoder=args.freeze_feature_encoder, seed=args.seed,
                        save_every=args.save_every, train_mode=args.train_mode)
    tty = sys.stderr.isatty()

    def log(line: str) -> None:  # progress on stderr: one line redrawn on a terminal, every line otherwise
        if tty and line.startswith("step "):
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    losses = finetune(args.model or default_model(), args.data, args.out, settings, log=log)
    if tty:
        print(file=sys.stderr)
    print(f"{args.out}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _tolerance(text: str) -> tuple[str, tuple[float, float]]:
    """PATTERN=ATOL[,RTOL] -> (pattern, (atol, rtol)); RTOL defaults to ATOL."""
    pattern, _, values = text.rpartition("=")
    numbers = values.split(",")
    try:
        parsed = [float(v) for v in numbers]
    except ValueError:
        parsed = []
    if not pattern or len(parsed) not in (1, 2) or not all(0 <= v < math.inf for v in parsed):
        raise argparse.ArgumentTypeError(f"expected PATTERN=ATOL[,RTOL] with tolerances >= 0, got {text!r}")
    return pattern, (parsed[0], parsed[-1])


def _nonnegative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _seconds(text: str, zero_means: str | None = None) -> float:
    """A command-line number of seconds: finite and > 0 (or 0 where ``zero_means`` says what 0 does)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf or (zero_means and value == 0)):
        expected = f"a number of seconds >= 0 (0: {zero_means})" if zero_means else "a positive number of seconds"
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, max_new_tokens: bool) -> None:
    """The options of every command that runs a model: which model, search width, length, dtype, device."""
    parser.add_argument("--model", help="model folder (HF layout), shipped model name or hub id "
                                        f"(default: {DEFAULT_MODEL_NAME})")
    parser.add_argument("--num-beams", type=_count, help="beam width (default: the model's generation_config.json)")
    if max_new_tokens:
        parser.add_argument("--max-new-tokens", type=_count, help="generate at most this many tokens")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="compute dtype")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help='where the model runs; cuda needs CuPy (pip install -e ".[cuda]")')


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="minis2t2",
        description="Speech2Text2 speech translation in plain NumPy (transformers 4.40.2 semantics).",
        epilog="exit status: 0 success, 1 compare found differences, 2 bad input or usage, "
               "3 internal error (a bug: please report it, with the output of --debug)",
    )
    parser.add_argument("--version", action="version", version=f"minis2t2 {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("translate", help="translate audio files to text",
                       description="Translate audio files (any format soundfile reads; resampled to 16 kHz). "
                                   "Prints one line per file, 'FILE<TAB>TEXT' (with --json one JSON object per "
                                   "file). Audio longer than --max-seconds is cut at its quietest points and "
                                   "translated piece by piece (progress on stderr); --segments splits at pauses "
                                   "instead and prints each utterance with its times. A file that cannot be read "
                                   "is reported on stderr and the others are still translated; the exit status "
                                   "is then 2.")
    t.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio file(s)")
    add_model_arguments(t, max_new_tokens=True)
    t.add_argument("--json", action="store_true", help="print one JSON object per file")
    t.add_argument("--segments", action="store_true",
                   help="split each file at its pauses and translate every utterance on its own: one line per "
                        "segment, 'FILE<TAB>START<TAB>END<TAB>TEXT' (seconds); with --json a list per file")
    t.add_argument("--min-pause", type=_seconds, default=0.5, metavar="SECONDS",
                   help="with --segments: the shortest silence that separates two utterances (default 0.5)")
    t.add_argument("--max-seconds", type=lambda text: _seconds(text, zero_means="no limit"), default=20.0,
                   metavar="SECONDS",
                   help="longer audio (or a longer segment) is cut at its quietest points into pieces of at most "
                        "this length, each translated on its own; 0: no limit (default 20)")
    t.set_defaults(run=_translate)

    d = sub.add_parser("download", help="fetch a model from the HuggingFace hub into the HF cache",
                       description="Fetch a model repo (config, tokenizer, weights) into the standard HF cache and "
                                   "print its folder. Needs `pip install minis2t2[hub]`; honours HF_HUB_OFFLINE.")
    d.add_argument("repo_id", help="e.g. facebook/s2t-wav2vec2-large-en-de")
    d.add_argument("--revision", help="branch, tag or commit (default: main)")
    d.set_defaults(run=_download)

    c = sub.add_parser("convert", help="rewrite a model folder's weights as model.safetensors",
                       description="Read SRC's weights (pytorch_model.bin or safetensors, single or sharded; no torch "
                                   "needed) and write DST/model.safetensors with the same tensor names and dtypes, "
                                   "plus SRC's config and tokenizer files. Later loads are memory-mapped.")
    c.add_argument("src", type=Path, help="model folder")
    c.add_argument("dst", type=Path, help="output folder")
    c.set_defaults(run=_convert)

    tr = sub.add_parser("trace", help="write every named tensor of one translation to a safetensors file",
                        description="Translate AUDIO, recording the input, every encoder module output, every "
                                    "decoder sublayer output and the logits at each decoding step, the ids and the "
                                    "text, into one safetensors file (format: docs/verify-your-implementation.md). "
                                    "Several files make one padded batch, as the processor pads it.")
    tr.add_argument("audio", type=Path, nargs="+", help="audio file(s)")
    tr.add_argument("--out", type=Path, required=True, help="trace file to write (.safetensors)")
    tr.add_argument("--labels", metavar="TEXT", action="append",
                    help="also trace the loss for this target text and the gradient of every parameter and "
                         "activation (grad.<name>), to check a port's backward pass; once per audio file")
    tr.add_argument("--only", metavar="PATTERN", action="append",
                    help="keep only the tensors this glob selects (a name without a wildcard selects everything "
                         "under it: --only encoder); repeatable; the inputs are always kept")
    add_model_arguments(tr, max_new_tokens=True)
    tr.set_defaults(run=_trace)

    ins = sub.add_parser("inspect", help="print every named activation of one translation, with statistics",
                         description="Translate AUDIO and print, in model order, every named activation (HF module "
                                     "path) and attention map with its shape and min / max / mean / std, then each "
                                     "decoding step's chosen token and top-3 alternatives: what to look at first "
                                     "when an output looks wrong.")
    ins.add_argument("audio", type=Path, help="audio file")
    add_model_arguments(ins, max_new_tokens=False)
    ins.set_defaults(run=_inspect)

    ft = sub.add_parser("finetune", help="fine-tune a model on recordings and their texts, in NumPy",
                        description="Train MODEL further on DATA (audio files and DATA/transcripts.tsv, one "
                                    "FILE<TAB>TEXT line per clip): AdamW with a warm-up and linear decay, gradient "
                                    "clipping. OUT receives an HF-layout model folder (transformers and minis2t2 "
                                    "both read it), the optimiser's state and loss.png, every --save-every steps "
                                    "and at the end; run the same command again to resume after an interrupt. A "
                                    "line that cannot be used (no tab, unreadable audio, a text the vocabulary "
                                    "cannot spell) is reported with its line number and skipped.")
    ft.add_argument("--model", help=f"model folder, shipped model name or hub id (default: {DEFAULT_MODEL_NAME})")
    ft.add_argument("--data", type=Path, required=True, help="folder with transcripts.tsv and the audio files")
    ft.add_argument("--out", type=Path, required=True, help="folder for the fine-tuned model and its state")
    ft.add_argument("--steps", type=_count, default=100, help="optimiser steps in all (default 100)")
    ft.add_argument("--lr", type=_positive, default=1e-4, help="peak learning rate (default 1e-4)")
    ft.add_argument("--batch-size", type=_count, default=8, help="clips per step (default 8)")
    ft.add_argument("--warmup", type=_count, help="warm-up steps (default: a tenth of --steps)")
    ft.add_argument("--weight-decay", type=lambda text: _positive(text) if text.strip() not in ("0", "0.0") else 0.0,
                    default=0.01, help="AdamW's decoupled weight decay (default 0.01)")
    ft.add_argument("--max-grad-norm", type=_positive, default=1.0, help="gradient clipping (default 1.0)")
    ft.add_argument("--freeze-feature-encoder", action="store_true",
                    help="leave the conv feature encoder as it is (transformers' freeze_feature_encoder)")
    ft.add_argument("--train-mode", action="store_true",
                    help="dropout, LayerDrop and SpecAugment as the model's config.json sets them (transformers' "
                         "train()); by default every step runs in eval mode, deterministic")
    ft.add_argument("--seed", type=int, default=0, help="draws the batches and, with --train-mode, the masks "
                                                         "(default 0)")
    ft.add_argument("--save-every", type=_count, default=50, help="checkpoint interval in steps (default 50)")
    ft.set_defaults(run=_finetune)

    cp = sub.add_parser("compare", help="compare two trace files layer by layer",
                        description="Compare trace B against reference trace A in model order: [OK], [DIFF], "
                                    "[SHAPE] or [MISSING] per tensor with max abs, max rel and mean abs error, the "
                                    "worst element's distance to the tolerance and the NMSE. The first divergence, "
                                    "marked, is the tensor that introduced the error: the earliest whose error "
                                    "jumps tenfold above all before it (see docs/verify-your-implementation.md). "
                                    "Exit status 1 when anything differs beyond |b - a| <= atol + rtol * |a| "
                                    "(ids and text exactly).")
    cp.add_argument("a", type=Path, help="reference trace")
    cp.add_argument("b", type=Path, help="trace to check")
    cp.add_argument("--atol", type=_nonnegative, default=1e-4, help="absolute tolerance (default 1e-4)")
    cp.add_argument("--rtol", type=_nonnegative, default=1e-4, help="relative tolerance (default 1e-4)")
    cp.add_argument("--tolerance", type=_tolerance, action="append", metavar="PATTERN=ATOL[,RTOL]",
                    help="a tolerance of their own for the tensors whose names match the glob PATTERN, e.g. "
                         "'encoder.encoder.layers.*=1e-3' (RTOL defaults to ATOL); repeatable, the last match decides")
    cp.add_argument("--json", action="store_true", help="print the report as JSON")
    cp.set_defaults(run=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    if debug:  # accepted anywhere on the line, before or after the command
        argv.remove("--debug")
    args = build_parser().parse_args(argv)
    args.debug = args.debug or debug
    try:
        return args.run(args)
    except BrokenPipeError:  # output piped into `head` and closed early
        return 0
    except (OSError, ValueError) as e:  # our errors subclass ValueError; missing files are OSError
        if args.debug:
            raise
        print(f"minis2t2: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else is a bug in minis2t2
        if args.debug:
            raise
        print(f"minis2t2: internal error: {type(e).__name__}: {e} (a bug: please report it, with the output of "
              "--debug)", file=sys.stderr)
        return 3
