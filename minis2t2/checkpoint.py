"""Where weights come from and go: a model folder (safetensors or PyTorch .bin, single or sharded),
the HuggingFace hub, ``convert`` from .bin to memory-mappable safetensors, and ``save_pretrained``
(a model in memory -> an HF-layout folder)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .errors import WeightsError
from .torch_bin import read_torch_bin
from .validate import read_json
from .weights import read_safetensors, write_safetensors

# (single file, shard index, reader), in order of preference
WEIGHT_FORMATS = (
    ("model.safetensors", "model.safetensors.index.json", read_safetensors),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", read_torch_bin),
)
# Everything of a HF model folder besides the weights.
MODEL_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def load_state_dict(folder: str | Path) -> dict[str, tuple]:
    """All tensors of a model folder as {name: (array, dtype name)}; safetensors preferred over .bin."""
    folder = Path(folder)
    for single, index, reader in WEIGHT_FORMATS:
        if (folder / single).is_file():
            return reader(folder / single)
        if (folder / index).is_file():
            return _read_shards(folder, folder / index, reader)
    names = ", ".join(name for fmt in WEIGHT_FORMATS for name in fmt[:2])
    raise FileNotFoundError(f"{folder} holds no weights (looked for {names})")


def read_weight_map(index: Path) -> dict[str, str]:
    """A shard index's {tensor name: shard file}. Shards are plain file names: files are only ever
    opened inside the model folder, never at an absolute or ../ path."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise WeightsError(f"{index}: no 'weight_map' object")
    for shard in weight_map.values():
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", "..") or "\\" in shard:
            raise WeightsError(f"{index}: shard {str(shard)[:100]!r} is not a plain file name in the model folder")
    return weight_map


def _read_shards(folder: Path, index: Path, reader) -> dict[str, tuple]:
    weight_map = read_weight_map(index)
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if not (folder / shard).is_file():
            raise WeightsError(f"{index} lists shard {shard!r}, which is missing from {folder}")
        tensors.update(reader(folder / shard))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise WeightsError(f"{index} lists tensors that no shard holds: {missing}")
    return tensors


def convert(src: str | Path, dst: str | Path) -> Path:
    """Write ``dst``/model.safetensors (tensor names and dtypes unchanged) plus the model's other files.

    Everything is written into a temporary folder beside ``dst`` and moved into place at the end,
    so a failure leaves nothing half-written.
    """
    src, dst = Path(src), Path(dst)
    tensors = load_state_dict(src)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} has no config.json")
    with staged(dst) as tmp:
        write_safetensors(tmp / "model.safetensors", tensors, metadata={"format": "pt"})
        for name in MODEL_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
    return dst


@contextlib.contextmanager
def staged(folder: Path):
    """A temporary folder beside ``folder`` to write into; when the block ends without an error, its
    files move into ``folder`` (made if missing), so a failure leaves nothing half-written."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        folder.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_pretrained(model, folder: str | Path) -> Path:
    """Write ``model`` as transformers' ``save_pretrained`` lays a model out, so that
    ``SpeechEncoderDecoderModel.from_pretrained(folder)`` and ``minis2t2.load(folder)`` both read it:

        config.json               the model's config.json as it was read (or built by random_init)
        generation_config.json    the generation defaults that differ from HF's
        preprocessor_config.json  the feature extractor's settings
        vocab.json, merges.txt    the tokenizer (merges one "a b" per line in rank order, each line
        tokenizer_config.json     ending in a newline: HF drops the text after the last one)
        model.safetensors         every parameter under its named_parameters() name (a tied lm_head
                                  once, as embed_tokens) plus the decoder's positional table

    Written into a temporary folder beside ``folder`` and moved into place at the end.
    """
    folder = Path(folder)
    tokenizer, extractor = model.tokenizer, model.processor.feature_extractor
    files = {
        "config.json": model.config.raw,
        "generation_config.json": {k: v for k, v in dataclasses.asdict(model.generation_config).items()
                                   if v != type(model.generation_config).__dataclass_fields__[k].default},
        "preprocessor_config.json": dataclasses.asdict(extractor) | {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor", "padding_side": "right",
            "processor_class": "Speech2Text2Processor"},
        "vocab.json": tokenizer.encoder,
        "tokenizer_config.json": {
            "tokenizer_class": "Speech2Text2Tokenizer", "bos_token": tokenizer.bos_token,
            "eos_token": tokenizer.eos_token, "pad_token": tokenizer.pad_token, "unk_token": tokenizer.unk_token,
            "do_lower_case": tokenizer.do_lower_case,
            "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces},
    }
    tensors = {name: np.ascontiguousarray(to_numpy(a)) for name, a in model.trainable_parameters().items()}
    tensors["decoder.model.decoder.embed_positions.weights"] = np.ascontiguousarray(to_numpy(model.positions_table))
    with staged(folder) as tmp:
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if tokenizer.bpe_ranks is not None:
            merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
            (tmp / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
        write_safetensors(tmp / "model.safetensors", {n: (a, SAFETENSORS_DTYPES[a.dtype.name]) for n, a in
                                                      tensors.items()}, metadata={"format": "pt"})
    return folder


SAFETENSORS_DTYPES = {"float32": "F32", "float64": "F64"}


def from_hub(repo_id: str, revision: str | None = None) -> Path:
    """Download (or find in the HF cache) a model repo's files; returns the local snapshot folder.

    Uses huggingface_hub (``pip install minis2t2[hub]``), the standard cache (HF_HOME,
    HF_HUB_CACHE) and its offline switch HF_HUB_OFFLINE=1. model.safetensors is fetched when the
    repo has it, else pytorch_model.bin (the published s2t-wav2vec2 checkpoints have only that).
    """
    try:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError as e:
        raise FileNotFoundError(f"{repo_id!r} is not a local folder, and loading it from the hub needs "
                                "huggingface_hub: pip install 'minis2t2[hub]'") from e

    def fetch(filename: str) -> Path | None:
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
        except LocalEntryNotFoundError as e:  # offline or unreachable, and not cached (a subclass: test first)
            if filename in ("config.json", "preprocessor_config.json", "vocab.json"):
                raise FileNotFoundError(
                    f"{repo_id}/{filename} is not in the local HF cache and the hub cannot be reached "
                    f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}); download it once while online"
                ) from e
            return None
        except EntryNotFoundError:  # the repo has no such file
            return None

    config = fetch("config.json")
    for name in MODEL_FILES[1:]:
        fetch(name)
    for single, index, _ in WEIGHT_FORMATS:
        if fetch(single) is not None:
            break
        index_path = fetch(index)
        if index_path is not None:
            for shard in sorted(set(read_weight_map(index_path).values())):
                fetch(shard)
            break
    else:
        raise FileNotFoundError(f"{repo_id} has neither model.safetensors nor pytorch_model.bin (nor their shards)")
    return config.parent
