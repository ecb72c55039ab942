"""Config files are validated by type and value when loaded: a wrong type, a boolean written as a
string, a non-positive size or a list of the wrong length is refused with the file, the field and
what was expected, never a TypeError deep in the forward pass or a silent misreading.

The fuzz test sets one field of one JSON file to a random JSON value and loads the folder: the
outcome must be a clean load or one of minis2t2's own errors (InputError), nothing else.
"""

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minis2t2
from minis2t2 import ConfigError, InputError
from tests.goldens import GOLDEN

MODEL = GOLDEN / "large_layer_stable_proj" / "model"


@pytest.fixture
def folder(tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(MODEL, dst)
    return dst


def edit_json(path, section, field, value):
    d = json.loads(path.read_text())
    (d[section] if section else d)[field] = value
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("file,section,field,value,message", [
    ("config.json", "encoder", "hidden_size", "128", 'hidden_size must be an integer, got "128"'),
    ("config.json", "decoder", "decoder_layers", 2.0, "decoder_layers must be an integer, got 2.0"),
    ("config.json", "encoder", "layer_norm_eps", "1e-5", 'layer_norm_eps must be a finite number, got "1e-5"'),
    ("config.json", "encoder", "layer_norm_eps", 0, "layer_norm_eps must be > 0"),
    ("config.json", "encoder", "conv_dim", "32,32", "conv_dim must be a non-empty list of integers"),
    ("config.json", "encoder", "conv_dim", [32, 32], "must have the same length, got 2, 3 and 3"),
    ("config.json", "encoder", "conv_stride", [5, 0, 2], "conv_stride must be between 1 and 1024 (each entry)"),
    ("config.json", "encoder", "num_hidden_layers", 10**7, "num_hidden_layers must be between 1 and 1024"),
    ("config.json", "encoder", "do_stable_layer_norm", "true", "do_stable_layer_norm must be true or false"),
    ("config.json", "decoder", "max_target_positions", 10**9, "max_target_positions must be between 1 and 65536"),
    ("config.json", "decoder", "decoder_attention_heads", 0, "decoder_attention_heads must be between 1"),
    ("config.json", "decoder", "eos_token_id", 10**5, "eos_token_id=100000 is not below vocab_size"),
    ("config.json", None, "encoder", None, "must hold both an 'encoder' and a 'decoder' section"),
    ("config.json", None, "decoder_start_token_id", "2", "decoder_start_token_id must be a token id"),
    ("preprocessor_config.json", None, "sampling_rate", "16000", 'sampling_rate must be an integer, got "16000"'),
    ("preprocessor_config.json", None, "sampling_rate", 10**9, "sampling_rate must be between 1000 and 192000"),
    ("preprocessor_config.json", None, "do_normalize", "false", 'do_normalize must be true or false, got "false"'),
    ("generation_config.json", None, "max_length", "16", 'max_length must be an integer, got "16"'),
    ("generation_config.json", None, "num_beams", 0, "num_beams must be between 1 and 1024"),
    ("generation_config.json", None, "eos_token_id", [2, "x"], "eos_token_id must be an integer or a non-empty"),
    ("generation_config.json", None, "early_stopping", "yes", 'early_stopping must be true, false or "never"'),
])
def test_bad_field_named_with_its_file(folder, file, section, field, value, message):
    path = folder / file
    if not path.is_file():
        path.write_text("{}")
    edit_json(path, section, field, value)
    with pytest.raises(ConfigError) as e:
        minis2t2.load(folder)
    assert message in str(e.value)
    assert str(e.value).startswith(str(path)), "the message must start with the file at fault"


@pytest.mark.parametrize("text,message", [
    ("[1, 2]", "expected a JSON object at the top level, got list"),
    ("[" * 100_000, "not valid JSON"),
    ('{"vocab_size": 1' + "0" * 5000 + "}", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_unreadable_json(folder, text, message):
    path = folder / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        minis2t2.load(folder)


def test_generate_arguments_are_checked_like_files():
    model = minis2t2.load(MODEL)
    with pytest.raises(ConfigError, match='generate\\(\\) arguments: num_beams must be an integer, got "3"'):
        model.generate(np.zeros((1, 1600), np.float32), num_beams="3")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
small_ints = st.integers(-3, 70)


def _fields(folder):
    config = json.loads((folder / "config.json").read_text())
    out = [("config.json", None, k) for k in config if k not in ("encoder", "decoder")]
    out += [("config.json", s, k) for s in ("encoder", "decoder") for k in config[s]]
    for name in ("preprocessor_config.json", "generation_config.json", "tokenizer_config.json", "vocab.json"):
        out += [(name, None, k) for k in json.loads((folder / name).read_text())]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_config_fields_load_or_raise_our_error(tmp_path, data):
    folder = tmp_path / "fuzz"
    if not folder.exists():
        shutil.copytree(MODEL, folder)
    fields = _fields(folder)
    file, section, field = data.draw(st.sampled_from(fields))
    value = data.draw(json_values | small_ints)
    original = (folder / file).read_text()
    try:
        edit_json(folder / file, section, field, value)
        try:
            minis2t2.load(folder)
        except InputError as e:  # any other exception type fails the test
            assert str(e).strip(), "an error must say what is wrong"
    finally:
        (folder / file).write_text(original)


@pytest.mark.parametrize("file,edit,message", [
    ("vocab.json", lambda d: d.update({"eins": "5"}), "vocab.json: ids must be integers >= 0; 'eins' has \"5\""),
    ("vocab.json", lambda d: d.update({"eins": -1}), "ids must be integers >= 0"),
    ("vocab.json", lambda d: d.update({"zzz": d["</s>"]}), "are used twice"),
    ("vocab.json", lambda d: d.pop("</s>"), "lacks the special token(s) ['</s>']"),
    ("tokenizer_config.json", lambda d: d.update({"eos_token": 2}), "eos_token must be a token"),
    ("tokenizer_config.json", lambda d: d.update({"do_lower_case": "no"}), "do_lower_case must be true or false"),
])
def test_bad_tokenizer_files(folder, file, edit, message):
    path = folder / file
    d = json.loads(path.read_text()) if path.is_file() else {}
    edit(d)
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as e:
        minis2t2.load(folder)
    assert message in str(e.value)


def test_merges_not_utf8(folder):
    (folder / "merges.txt").write_bytes(b"a b\n\xff\xfe c\n")
    with pytest.raises(ConfigError, match="merges.txt: not UTF-8"):
        minis2t2.load(folder)


def test_config_knows_the_activations_layers_implement():
    """config.py names the activations without importing layer code; the two lists must agree."""
    from minis2t2.config import ACTIVATION_NAMES
    from minis2t2.layers import ACTIVATIONS

    assert set(ACTIVATIONS) == ACTIVATION_NAMES
