"""The conformance pack (tools/conformance.py): every file the manifest names exists, and the traces
are transformers' own: each forward trace equals tools.trace_transformers' trace of the same audio
with the same search (atol = rtol = 1e-4, ids exact), and each gradients trace's parameter gradients
equal torch autograd's within the manifest's tolerance (1e-4 of each gradient plus 1e-4 of the
largest one, as the goldens' grad_tol)."""

import json

import numpy as np
import pytest
import torch
from transformers import SpeechEncoderDecoderModel, Wav2Vec2FeatureExtractor

import minis2t2
from minis2t2.cli import main as cli
from tests import reference as R
from tools import conformance
from tools.trace_transformers import trace_transformers


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    out = tmp_path_factory.mktemp("pack")
    conformance.main([str(out), "--cases", "large_layer_stable_proj", "demo"])
    return out


def test_the_manifest_names_every_file(pack):
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["format"] == "minis2t2-trace/1" and set(manifest["cases"]) == {"large_layer_stable_proj", "demo"}
    for name, case in manifest["cases"].items():
        assert (pack / case["model"] / "config.json").is_file()
        assert set(case["traces"]) == {"greedy", "beam", "batch", "gradients"}
        for trace in case["traces"].values():
            assert all((pack / name / audio).is_file() for audio in trace["audio"])
            assert trace["check"].startswith("minis2t2 compare")


@pytest.mark.parametrize("case", ["large_layer_stable_proj", "demo"])
@pytest.mark.parametrize("trace", ["greedy", "beam", "batch"])
def test_forward_traces_are_transformers_traces(pack, case, trace):
    spec = json.loads((pack / "manifest.json").read_text())["cases"][case]["traces"][trace]
    audio = [pack / case / a for a in spec["audio"]]
    hf = trace_transformers(audio if len(audio) > 1 else audio[0], pack / case / "model",
                            num_beams=spec["num_beams"], max_new_tokens=spec["max_new_tokens"])
    result = minis2t2.compare(hf, pack / case / f"{trace}.safetensors")
    assert result.ok and all(r.status == "OK" for r in result.rows), str(result)


@pytest.mark.parametrize("case", ["large_layer_stable_proj", "demo"])
def test_gradient_traces_are_torch_autograd(pack, case, capsys):
    spec = json.loads((pack / "manifest.json").read_text())["cases"][case]["traces"]["gradients"]
    tensors, _ = minis2t2.load_trace(pack / case / "gradients.safetensors")
    folder = pack / case / "model"
    hf = SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()
    model = minis2t2.load(folder)
    labels = model.processor(text=spec["labels"])["labels"]
    values = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))(
        minis2t2.load_audio(pack / case / spec["audio"][0], 16000), sampling_rate=16000, return_tensors="np")
    np.testing.assert_allclose(tensors["input.values"], values["input_values"], atol=1e-6)
    expected = R.gradients(hf, values["input_values"], values.get("attention_mask"), labels)
    scale = spec["largest_gradient"]
    for name, grad in expected.items():
        np.testing.assert_allclose(tensors[f"grad.{name}"], grad, rtol=conformance.GRAD_TOL, atol=conformance.GRAD_TOL * scale,
                                   err_msg=name)
    with torch.no_grad():
        loss = hf(input_values=torch.from_numpy(values["input_values"]), labels=torch.from_numpy(labels)).loss.item()
    assert abs(tensors["loss"].item() - loss) < 1e-5 * (1 + loss)
    # the manifest's own check command passes on the file itself
    command = spec["check"].replace("YOUR_TRACE.safetensors", str(pack / case / "gradients.safetensors"))
    args = [a.strip("'") for a in command.split()[1:]]
    args[1] = str(pack / args[1])
    assert cli(args) == 0
