"""``minis2t2 finetune``: a run on a small data folder with bad lines in it, the HF-layout folder it
writes (transformers reads it and computes the same logits, atol 1e-4), resuming after an
interruption (the same losses, step for step, as one uninterrupted run), and refusals."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SpeechEncoderDecoderModel

import minis2t2
from minis2t2.cli import main

DEMO = Path(__file__).resolve().parents[1] / "weights" / "numbers-en-de"
ARGS = ["--batch-size", "3", "--save-every", "2", "--lr", "3e-4", "--warmup", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    expected = json.loads((DEMO / "samples" / "expected.json").read_text(encoding="utf-8"))
    names = sorted(expected)[:5]
    for name in names:
        shutil.copyfile(DEMO / "samples" / name, folder / name)
    lines = [f"{n}\t{expected[n]['german']}" for n in names]
    lines[1:1] = ["no tab on this line", "missing.wav\tzwölf", f"{names[0]}\tHallo Welt"]  # lines 2, 3, 4
    (folder / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run(argv, capsys):
    code = main(["finetune", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_finetune_skips_bad_lines_and_writes_a_folder_transformers_reads(data, tmp_path, capsys):
    out = tmp_path / "tuned"
    code, stdout, stderr = run(["--data", str(data), "--out", str(out), "--steps", "3", *ARGS], capsys)
    assert code == 0, stderr
    tsv = data / "transcripts.tsv"
    assert f"{tsv}:2: expected FILE<TAB>TEXT" in stderr
    assert f"{tsv}:3: {data / 'missing.wav'}: no such file" in stderr
    assert f"{tsv}:4: the model's vocabulary cannot spell 'Hallo Welt'" in stderr
    assert "5 clips" in stderr and "step 3/3" in stderr and "3 steps" in stdout
    assert (out / "loss.png").is_file() and json.loads((out / "trainer_state.json").read_text())["step"] == 3

    tuned, source = minis2t2.load(out), minis2t2.load(DEMO)
    changed = tuned.params.decoder.model.decoder.layers[0].fc1.weight - source.params.decoder.model.decoder.layers[0].fc1.weight
    assert np.abs(changed).max() > 0, "the weights moved"
    hf = SpeechEncoderDecoderModel.from_pretrained(str(out)).eval()
    first = min(json.loads((DEMO / "samples" / "expected.json").read_text(encoding="utf-8")))
    audio = minis2t2.load_audio(DEMO / "samples" / first, 16000)
    inputs = tuned.processor(audio, sampling_rate=16000, text="zwölf")
    ours = tuned(inputs["input_values"], inputs["attention_mask"], labels=inputs["labels"])
    with torch.no_grad():
        theirs = hf(input_values=torch.from_numpy(inputs["input_values"]),
                    attention_mask=torch.from_numpy(inputs["attention_mask"]), labels=torch.from_numpy(inputs["labels"]))
    np.testing.assert_allclose(ours.logits, theirs.logits.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("train_mode", [False, True])
def test_resuming_gives_the_losses_of_one_uninterrupted_run(data, tmp_path, capsys, train_mode):
    """Ctrl-C during step 3 of 4 (after the checkpoint of step 2), then the same command again:
    the losses are those of one run without the interruption (same batches, optimiser state and
    schedule, and in train mode the same dropout and SpecAugment masks; float32 sums in the same
    order)."""
    from minis2t2.finetune import Settings, finetune

    settings = Settings(steps=4, lr=3e-4, batch_size=3, warmup=1, save_every=2, train_mode=train_mode)
    whole = finetune(DEMO, data, tmp_path / "straight", settings, log=lambda line: None, warn=lambda line: None)

    def interrupt_at_step_3(line):
        if line.startswith("step 3/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        finetune(DEMO, data, tmp_path / "interrupted", settings, log=interrupt_at_step_3, warn=lambda line: None)
    assert json.loads((tmp_path / "interrupted" / "trainer_state.json").read_text())["step"] == 2
    code, _, stderr = run(["--model", str(DEMO), "--data", str(data), "--out", str(tmp_path / "interrupted"),
                           "--steps", "4", *ARGS, *(["--train-mode"] if train_mode else [])], capsys)
    assert code == 0 and "steps 3-4" in stderr
    resumed = json.loads((tmp_path / "interrupted" / "trainer_state.json").read_text())["losses"]
    np.testing.assert_allclose(resumed, whole, rtol=1e-6)
    if train_mode:  # dropout and SpecAugment change the first step's loss (the weights are the same)
        eval_mode = finetune(DEMO, data, tmp_path / "eval", Settings(steps=1, batch_size=3), log=lambda line: None,
                             warn=lambda line: None)
        assert abs(whole[0] - eval_mode[0]) > 1e-3


def test_no_usable_line_and_bad_options_are_usage_errors(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "transcripts.tsv").write_text("nothing.wav\tzwölf\n", encoding="utf-8")
    code, _, stderr = run(["--data", str(folder), "--out", str(tmp_path / "o"), "--steps", "1"], capsys)
    assert code == 2 and "no usable line to train on" in stderr
    code, _, stderr = run(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "transcripts.tsv: no such file" in stderr
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--data", str(folder), "--out", str(tmp_path / "o"), "--lr", "-1"])
    assert exit_info.value.code == 2 and "--lr: must be a positive number" in capsys.readouterr().err


def test_a_state_it_cannot_resume_is_a_usage_error(data, tmp_path, capsys):
    """OUT holding a trainer_state.json this version cannot resume from (not JSON; or an older run's,
    without the optimiser's per-parameter step counts beside its optimizer.safetensors): one line
    naming the file, exit 2, nothing trained."""
    out = tmp_path / "old"
    shutil.copytree(DEMO, out, ignore=shutil.ignore_patterns("samples"))
    (out / "optimizer.safetensors").write_bytes(b"")
    for state, reason in ((json.dumps({"step": 2, "losses": [0.5, 0.4]}), "no optimizer_steps"), ("{not json", "")):
        (out / "trainer_state.json").write_text(state)
        code, _, stderr = run(["--data", str(data), "--out", str(out), "--steps", "3"], capsys)
        assert code == 2 and stderr.count("\n") == 1, stderr
        assert f"{out / 'trainer_state.json'}: cannot resume from it" in stderr and reason in stderr
