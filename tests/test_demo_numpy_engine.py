"""The demo recipe's NumPy engine (tools/demo/train_numpy.py): its step against the torch engine's
(train.torch_step) on the recipe's own model, a run interrupted and resumed against one that was
not, and the engine working with torch and transformers out of reach.

The step comparison is float64, with dropout and SpecAugment off (their masks come from NumPy's
generator in one engine and torch's in the other; tests/test_training_mode.py holds the masked
forward and backward against torch with the same masks): the decoder's and the CTC loss then
agree to 1e-9 relative at each of four steps, across warm-up, the freezing of the feature encoder
and AdamW's updates, which is what a wrong gradient, clip, schedule or freeze would break."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import minis2t2
from minis2t2.audio import FeatureExtractor
from minis2t2.loading import DEFAULT_MODEL_NAME
from minis2t2.optim import AdamW, warmup_cosine
from minis2t2.tokenizer import Tokenizer
from minis2t2.weights import Tree
from tools.demo import train, train_numpy

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "weights" / DEFAULT_MODEL_NAME
PHASE = {"steps": 4, "lr": 1e-3, "warmup": 2, "seed": 0, "ctc_weight": 0.5, "freeze_feature_encoder_after": 2}
NUMBERS = [21, 7, None, 340]  # None: a clip without a number (no words, the empty string)


def a_batch(tokenizer, seed: int = 0):
    """A Batches-like item: four clips of noise of different lengths, their labels and words."""
    rng = np.random.default_rng(seed)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (9000, 12000, 16000, 7000)]
    inputs = FeatureExtractor(return_attention_mask=True)(waves, sampling_rate=16000, padding=True)
    labels_of, word_id = train.labels_and_words(tokenizer)
    width = max(len(labels_of[n]) for n in NUMBERS)
    labels = np.array([labels_of[n] + [-100] * (width - len(labels_of[n])) for n in NUMBERS])
    words = [[] if n is None else [word_id[w] for w in train.english(n).split()] for n in NUMBERS]
    return inputs["input_values"], inputs["attention_mask"], labels, words


@pytest.fixture
def torch_float64():
    """transformers builds its attention masks in the default dtype: float64 while the test runs."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_numpy_step_matches_the_torch_engine(tmp_path, torch_float64):
    tokenizer = Tokenizer.from_folder(DEMO)
    torch.manual_seed(0)
    theirs = train.build_model(tokenizer.vocab_size, frame_ms=40).double().eval()  # eval: no dropout, no SpecAugment
    theirs.save_pretrained(str(tmp_path), safe_serialization=True)
    for name in ("vocab.json", "merges.txt", "preprocessor_config.json"):
        (tmp_path / name).write_bytes((DEMO / name).read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())  # the same off switches for minis2t2's masks
    config["encoder"] |= {"hidden_dropout": 0.0, "apply_spec_augment": False}
    config["decoder"] |= {"dropout": 0.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = minis2t2.load(tmp_path, dtype="float64")

    _, word_id = train.labels_and_words(tokenizer)
    their_head = torch.nn.Linear(144, len(word_id) + 1).double()
    our_head = Tree(weight=their_head.weight.detach().numpy().copy(), bias=their_head.bias.detach().numpy().copy())
    their_optimizer = torch.optim.AdamW([*theirs.parameters(), *their_head.parameters()], lr=PHASE["lr"],
                                        weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(their_optimizer,
                                                 lambda s: warmup_cosine(s, PHASE["warmup"], PHASE["steps"]))
    our_optimizer = AdamW(lr=PHASE["lr"], weight_decay=0.01)
    frozen_before = theirs.encoder.feature_extractor.conv_layers[0].conv.weight.detach().clone()
    for k in range(PHASE["steps"]):
        values, mask, labels, words = a_batch(tokenizer, seed=k)
        if k == PHASE["freeze_feature_encoder_after"]:
            theirs.freeze_feature_encoder()
            frozen_before = theirs.encoder.feature_extractor.conv_layers[0].conv.weight.detach().clone()
        their_lr = their_optimizer.param_groups[0]["lr"]
        expected = train.torch_step(theirs, their_head, their_optimizer, schedule,
                                    (torch.from_numpy(values).double(), torch.from_numpy(mask), torch.from_numpy(labels),
                                     words), PHASE["ctc_weight"])
        row = train_numpy.recipe_step(ours, our_head, our_optimizer, (values.astype(np.float64), mask, labels, words),
                                      PHASE, k)
        np.testing.assert_allclose([row["decoder_loss"], row["ctc_loss"]], expected, rtol=1e-9, err_msg=f"step {k}")
        assert row["lr"] == pytest.approx(their_lr, rel=1e-12)
    ours_after = ours.params.encoder.feature_extractor.conv_layers[0].conv.weight
    torch.testing.assert_close(theirs.encoder.feature_extractor.conv_layers[0].conv.weight.detach(), frozen_before)
    np.testing.assert_allclose(ours_after, frozen_before.numpy(), rtol=1e-9, atol=1e-12)  # frozen in both


class FixedBatches:
    """Batches' interface over a few fixed items: b[k] is item k mod len, word_id as the recipe's."""

    def __init__(self, items, word_id):
        self.items, self.word_id = items, word_id

    def __getitem__(self, k):
        return self.items[k % len(self.items)]


def tiny_model(folder: Path):
    """A small model of the recipe's layout (two conv layers, one encoder layer) with the demo tokenizer."""
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((DEMO / name).read_bytes())
    encoder = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
               "conv_dim": [8, 16], "conv_kernel": [10, 8], "conv_stride": [5, 8], "feat_extract_norm": "layer",
               "do_stable_layer_norm": True, "conv_bias": True, "num_conv_pos_embeddings": 4,
               "num_conv_pos_embedding_groups": 2, "hidden_dropout": 0.1, "mask_time_prob": 0.1,
               "mask_time_length": 2, "mask_feature_prob": 0.1, "mask_feature_length": 4}
    decoder = {"vocab_size": Tokenizer.from_folder(folder).vocab_size, "d_model": 16, "decoder_layers": 1,
               "decoder_attention_heads": 2, "decoder_ffn_dim": 32, "dropout": 0.1, "max_target_positions": 32}
    return minis2t2.random_init(encoder, decoder, seed=0, tokenizer=folder,
                                feature_extractor=FeatureExtractor(return_attention_mask=True))


def test_an_interrupted_run_resumes_where_it_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(train_numpy, "CHECK_EVERY", 2)
    monkeypatch.setattr(train_numpy, "dev_exact_match", lambda *_: 0.0)
    tokenizer = Tokenizer.from_folder(DEMO)
    _, word_id = train.labels_and_words(tokenizer)
    batches = FixedBatches([a_batch(tokenizer, seed) for seed in range(3)], word_id)
    phase = PHASE | {"steps": 5, "freeze_feature_encoder_after": 3}
    state = {"phase": 1, "step": 0, "seconds": 0.0, "history": [], "settings": {}}

    (tmp_path / "whole").mkdir()
    whole = tiny_model(tmp_path / "whole")
    train_numpy.train_phase(whole, 1, phase, batches, [], [], tmp_path / "whole", dict(state), log=lambda _: None)

    def interrupt_after_step_4(line):  # at step 4's check, before its save: the last save is step 2's
        if '"dev_exact_match"' in line and json.loads(line)["step"] == 4:
            raise KeyboardInterrupt

    (tmp_path / "cut").mkdir()
    with pytest.raises(KeyboardInterrupt):
        train_numpy.train_phase(tiny_model(tmp_path / "cut"), 1, phase, batches, [], [], tmp_path / "cut", dict(state),
                                log=interrupt_after_step_4)
    saved = json.loads((tmp_path / "cut" / train_numpy.STATE).read_text())
    assert saved["step"] == 2
    resumed = minis2t2.load(tmp_path / "cut")
    train_numpy.train_phase(resumed, 1, phase, batches, [], [], tmp_path / "cut", saved, log=lambda _: None)
    for name, array in whole.trainable_parameters().items():
        np.testing.assert_array_equal(resumed.trainable_parameters()[name], array, err_msg=name)
    heads = [train_numpy.read_safetensors(tmp_path / run / train_numpy.MOMENTS) for run in ("whole", "cut")]
    for name, (array, _) in heads[0].items():
        np.testing.assert_array_equal(heads[1][name][0], array, err_msg=name)  # the CTC head and AdamW's moments


def test_the_numpy_engine_needs_neither_torch_nor_transformers(tmp_path):
    script = f"""
import sys

class Unreachable:  # importing torch or transformers (or any part of them) now fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{{name}} is out of reach in this test")

sys.meta_path.insert(0, Unreachable())
from pathlib import Path
import numpy as np
from minis2t2.optim import AdamW
from tools.demo import train, train_numpy
out = Path({str(tmp_path)!r})
tokenizer = train.make_tokenizer(out, train_numpy.read_tokenizer)
model = train_numpy.new_model(out, tokenizer.vocab_size, 40, seed=0)
labels_of, word_id = train.labels_and_words(tokenizer)
head = train_numpy.new_ctc_head(144, len(word_id) + 1, np.random.default_rng(0))
waves = [np.random.default_rng(n).standard_normal(n * 1000).astype(np.float32) for n in (9, 12)]
inputs = model.processor(waves, sampling_rate=16000)
width = max(len(labels_of[21]), len(labels_of[7]))
labels = np.array([ls + [-100] * (width - len(ls)) for ls in (labels_of[21], labels_of[7])])
batch = inputs["input_values"], inputs["attention_mask"], labels, [[word_id["twenty"], word_id["one"]], [word_id["seven"]]]
row = train_numpy.recipe_step(model, head, AdamW(), batch, {PHASE!r}, 0)
print(row["decoder_loss"], row["ctc_loss"])
assert not any(name.split(".")[0] in ("torch", "transformers") for name in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    decoder_loss, ctc_loss = map(float, done.stdout.split())
    vocab = len(json.loads((tmp_path / "vocab.json").read_text()))
    assert abs(decoder_loss - np.log(vocab)) < 1.0  # a fresh model: near-uniform over the vocabulary
    assert ctc_loss > 0


def test_the_numpy_engine_will_not_overwrite_the_shipped_model(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "--engine", "numpy"])
    with pytest.raises(SystemExit) as stop:
        train.main()
    assert stop.value.code == 2
    assert "--engine numpy: give --out DIR" in capsys.readouterr().err


def test_a_run_of_two_phases_resumes_at_the_phase_it_was_in(tmp_path, monkeypatch):
    """run(): phase 2 interrupted after its last save but before its record was written: the same
    command trains nothing more and writes phase 2's record on phase 1's; with both recorded it
    does nothing at all."""
    import argparse

    monkeypatch.setattr(train_numpy, "CHECK_EVERY", 1)
    monkeypatch.setattr(train_numpy, "dev_exact_match", lambda *_: 0.0)
    monkeypatch.setattr(train_numpy, "new_model", lambda out, *_: tiny_model(out))
    tokenizer = Tokenizer.from_folder(DEMO)
    _, word_id = train.labels_and_words(tokenizer)
    fixed = FixedBatches([a_batch(tokenizer, seed) for seed in range(2)], word_id)
    monkeypatch.setattr(train, "Batches", lambda *_, **__: fixed)
    base = PHASE | {"ctc_weight": 0.0, "clean_start": 0, "tight_trim": 0.0, "styles": False}
    settings = {1: base | {"steps": 2, "ctc_weight": 0.5}, 2: base | {"steps": 2, "seed": 1, "lr": 5e-4}}
    args = argparse.Namespace(out=tmp_path, init=None, frame_ms=None, batch_size=4)
    data = {"bank": [], "bank_items": [], "dev_items": [], "dev_clips": []}

    def run():
        train_numpy.run([1, 2], settings, args, data, lambda data, phase: ([], [], [], []), log=lambda _: None)

    run()
    record = json.loads((tmp_path / "training.json").read_text())
    assert (record["phase"], record["previous"]["phase"], record["previous"]["previous"]) == (2, 1, None)
    weights = minis2t2.load(tmp_path).trainable_parameters()

    (tmp_path / "training.json").write_text(json.dumps(record["previous"]))  # as if killed before phase 2's record
    run()
    again = json.loads((tmp_path / "training.json").read_text())
    assert (again["phase"], again["previous"]["phase"]) == (2, 1)
    assert again["history"] == record["history"]
    for name, array in minis2t2.load(tmp_path).trainable_parameters().items():
        np.testing.assert_array_equal(array, weights[name], err_msg=name)  # no step taken

    run()  # both phases recorded: nothing to do
    assert json.loads((tmp_path / "training.json").read_text()) == again
