"""minis2t2 against frozen transformers 4.40.2 outputs (tests/golden, made by tools/make_goldens.py).

Every intermediate minis2t2 records must exist in the golden file and agree within the
manifest's tolerance (atol = rtol = 1e-4 in fp32; observed max errors are ~5e-6), the loss
likewise, every parameter's gradient within 1e-4 of the model's largest gradient (plus 1e-4
relative; torch autograd's, eval mode), and every generated id exactly.

Every test runs twice: on NumPy, and with the weights on tests/strict_xp.py, the stand-in for
CuPy (device="cuda"), which fails any layer that hands a device array to NumPy.
"""

import numpy as np
import pytest

import minis2t2
from minis2t2.compare import compare_dicts, first_divergence, report
from tests import goldens, strict_xp

MANIFEST = goldens.manifest()
VARIANTS = sorted(MANIFEST["variants"])
CASES = [(v, c) for v in VARIANTS for c in MANIFEST["variants"][v]["generation_cases"]]


@pytest.fixture(scope="module", params=["numpy", "strict_xp"])
def loaded(request):
    with pytest.MonkeyPatch.context() as m:
        device = "cpu"
        if request.param == "strict_xp":
            m.setattr(minis2t2.loading, "device_module", lambda name: strict_xp)
            device = "cuda"
        return {v: goldens.load_variant(v, device=device) for v in VARIANTS}


def _inputs(model, golden, split):
    audio = [golden["raw/0"]] if split == "single" else [golden["raw/0"], golden["raw/1"]]
    return model.processor(audio, sampling_rate=16000)


@pytest.mark.parametrize("split", ["single", "batch"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_processor(loaded, variant, split):
    model, golden = loaded[variant]
    inputs = _inputs(model, golden, split)
    np.testing.assert_allclose(inputs["input_values"], golden[f"{split}/input_values"], atol=1e-6, rtol=0)
    assert ("attention_mask" in inputs) == (f"{split}/attention_mask" in golden)
    if "attention_mask" in inputs:
        np.testing.assert_array_equal(inputs["attention_mask"], golden[f"{split}/attention_mask"])


@pytest.mark.parametrize("split", ["single", "batch"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_intermediate(loaded, variant, split):
    model, golden = loaded[variant]
    out, record, reference, loss = goldens.teacher_forced(model, golden, MANIFEST["variants"][variant]["labels"], split)
    assert set(record) == set(reference), "minis2t2 and the reference record different module paths"
    rows = compare_dicts(reference, record, atol=MANIFEST["atol"], rtol=MANIFEST["rtol"])
    assert first_divergence(rows) is None, report(rows)
    np.testing.assert_allclose(out.logits, reference["decoder.lm_head"], atol=MANIFEST["atol"], rtol=MANIFEST["rtol"])
    np.testing.assert_allclose(out.loss, loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("split", ["single", "batch"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients(loaded, variant, split):
    """loss_and_grads against torch autograd's gradient of every trainable parameter."""
    model, golden = loaded[variant]
    grads, reference = goldens.gradients(model, golden, MANIFEST["variants"][variant]["labels"], split)
    assert len(reference) > 50  # every parameter of the variant was recorded
    assert goldens.gradient_failures(grads, reference, MANIFEST["grad_tol"]) == []


@pytest.mark.parametrize("variant,case", CASES)
def test_generation(loaded, variant, case):
    model, golden = loaded[variant]
    ids = goldens.generated(model, golden, MANIFEST["variants"][variant]["generation_cases"][case])
    np.testing.assert_array_equal(ids, golden[f"generate/{case}"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_generation_single(loaded, variant):
    model, golden = loaded[variant]
    ids = model.generate(golden["single/input_values"], golden.get("single/attention_mask"))
    np.testing.assert_array_equal(ids, golden["generate/single_greedy"])


def test_goldens_failures_names_a_broken_variant(loaded):
    """The summary the GPU check relies on finds a wrong weight and agrees when nothing is wrong."""
    variant = VARIANTS[0]
    model, golden = loaded[variant]
    spec = MANIFEST["variants"][variant]
    assert goldens.failures(model, golden, variant, spec, MANIFEST["atol"], MANIFEST["rtol"],
                            MANIFEST["grad_tol"]) == []
    broken = dict(golden)
    broken["batch/decoder.lm_head"] = golden["batch/decoder.lm_head"] + 1e-2
    found = goldens.failures(model, broken, variant, spec, MANIFEST["atol"], MANIFEST["rtol"], MANIFEST["grad_tol"])
    assert len(found) == 1 and found[0].startswith(f"{variant} batch: ") and "lm_head" in found[0], found
    name = "decoder.model.decoder.layers.0.fc1.weight"
    broken = dict(golden) | {f"single/grad/{name}": golden[f"single/grad/{name}"] * 1.01}
    found = goldens.failures(model, broken, variant, spec, MANIFEST["atol"], MANIFEST["rtol"], MANIFEST["grad_tol"])
    assert found == [f"{variant} single grad {name}: " + found[0].split(f"{name}: ")[1]], found
