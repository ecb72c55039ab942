"""The CuPy backend, proven without a GPU: the model's weights on tests/strict_xp.py (a strict
stand-in for CuPy: see its docstring for what it imitates and what not). tests/test_golden.py
runs every golden test on it; here: generation moves only a few numbers to the host per step,
a NumPy call on the hot path is caught, and device="cuda" without CuPy is a clear error."""

import sys

import numpy as np
import pytest

import minis2t2
from minis2t2 import InputError, layers
from minis2t2.cli import main
from tests import strict_xp
from tests.goldens import GOLDEN
from tests.signals import speech_like

ROOT = GOLDEN.parents[1]
MODEL = GOLDEN / "large_layer_stable_proj" / "model"


@pytest.fixture(scope="module")
def on_device():
    with pytest.MonkeyPatch.context() as m:
        m.setattr(minis2t2.loading, "device_module", lambda name: strict_xp)
        return minis2t2.load(MODEL, device="cuda")


def test_weights_live_on_the_device(on_device):
    assert type(on_device.params.encoder.encoder.layers[0].attention.q_proj.weight) is strict_xp.ndarray
    assert type(on_device.positions_table) is strict_xp.ndarray
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(on_device.params.decoder.lm_head.weight)


@pytest.mark.parametrize("num_beams,per_step", [(1, 1), (4, 2)])
def test_generation_brings_back_a_few_numbers_per_step(on_device, num_beams, per_step):
    """Greedy: the chosen ids (1 array of B). Beam search: the 2K best candidates' ids and scores."""
    audio = [speech_like(6000, 3), speech_like(4000, 4)]
    inputs = on_device.processor(audio, sampling_rate=16000)
    strict_xp.transfers = 0
    ids = on_device.generate(inputs["input_values"], inputs["attention_mask"], num_beams=num_beams,
                             max_new_tokens=12, min_new_tokens=12)
    assert strict_xp.transfers == 12 * per_step
    on_cpu = minis2t2.load(MODEL)
    expected = on_cpu.generate(inputs["input_values"], inputs["attention_mask"], num_beams=num_beams,
                               max_new_tokens=12, min_new_tokens=12)
    np.testing.assert_array_equal(ids, expected)


def test_a_numpy_call_on_the_hot_path_is_caught(on_device, monkeypatch):
    def softmax_on_numpy(x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))  # the bug: np instead of the array's module
        return e / e.sum(axis=axis, keepdims=True)

    monkeypatch.setattr(layers, "softmax", softmax_on_numpy)
    with pytest.raises(TypeError):
        on_device.translate(speech_like(4000, 5), sampling_rate=16000)


def test_cuda_without_cupy_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError, as on a machine without it
    with pytest.raises(InputError, match=r'device=.cuda. needs CuPy: pip install -e "\.\[cuda\]"'):
        minis2t2.load(MODEL, device="cuda")
    audio = tmp_path / "a.wav"
    import soundfile

    soundfile.write(audio, speech_like(4000, 6), 16000)
    assert main(["translate", "--model", str(MODEL), "--device", "cuda", str(audio)]) == 2
    err = capsys.readouterr().err
    assert "needs CuPy" in err and len(err.strip().splitlines()) == 1


def test_gpu_check_script_runs_with_only_what_the_gpu_machine_has(tmp_path):
    """benchmarks/gpu_check.py must run unchanged on the GPU machine, which has numpy, scipy and
    CuPy but no soundfile, no safetensors package and no transformers 4.40: its dry run (the
    stand-in instead of CuPy, small sizes) with those imports blocked passes every golden and
    matches NumPy on the random model."""
    import json
    import subprocess

    blocked = ("soundfile", "safetensors", "transformers", "torch")
    code = (f"import importlib.abc, runpy, sys\n"
            f"class Absent(importlib.abc.MetaPathFinder):\n"
            f"    def find_spec(self, name, path, target=None):\n"
            f"        if name.split('.')[0] in {blocked!r}: raise ImportError(f'{{name}} is not installed')\n"
            f"sys.meta_path.insert(0, Absent())\n"
            f"sys.argv = ['gpu_check.py', '--dry-run', '--out', {str(tmp_path)!r}]; "
            f"runpy.run_module('benchmarks.gpu_check', run_name='__main__', alter_sys=True)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["goldens"]["failures"] == []
    assert report["fullsize_vs_numpy"]["greedy_ids_identical"]
    assert max(report["fullsize_vs_numpy"]["encoder"], report["fullsize_vs_numpy"]["logits"]) < 1e-3
    assert [row["seconds"] for row in report["encoder"]] == [1.0, 2.0]


def test_cupy_without_a_usable_gpu_is_a_clear_error(monkeypatch, capsys, tmp_path):
    """CuPy installs on machines without a GPU; its first CUDA call fails there."""
    import types

    class CUDARuntimeError(RuntimeError):
        pass

    def no_device():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(InputError, match="CuPy is installed but finds no usable GPU .CUDARuntimeError"):
        minis2t2.load(MODEL, device="cuda")
    import soundfile

    soundfile.write(tmp_path / "a.wav", speech_like(4000, 6), 16000)
    assert main(["translate", "--model", str(MODEL), "--device", "cuda", str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err
    assert "no usable GPU" in err and len(err.strip().splitlines()) == 1
