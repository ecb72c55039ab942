"""The README's Python runs as written, from the repository root."""

import json
import re
from pathlib import Path

import minis2t2

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippets_run(monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the README has Python snippets"
    monkeypatch.chdir(ROOT)
    printed = []
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 -- the README's own snippet, run as written
        printed.append(capsys.readouterr().out.splitlines())
    assert len(printed) == 2, "the API snippet and the training snippet"
    steps = [line.split() for line in printed[1]]
    assert [int(s[0]) for s in steps] == [0, 1, 2] and float(steps[2][1]) < float(steps[0][1]), \
        "three AdamW steps on one clip lower its loss"
    lines = printed[0]
    assert len(lines) == 5
    assert lines[0] == lines[1], "a file and its waveform (with its rate) translate alike"
    assert 0 < float(lines[3].split()[0]) < 0.5, "a small loss: the labels are the samples' own texts"
    samples = ROOT / "weights" / "numbers-en-de" / "samples"
    expected = json.loads((samples / "expected.json").read_text(encoding="utf-8"))
    first_two = [expected[f.name]["german"] for f in sorted(samples.glob("*.wav"))[:2]]
    assert lines[2] == str(first_two), "the batch translates to the samples' own texts"
    assert lines[0] == first_two[0]


def test_the_transformers_doc_snippet_runs_as_written(monkeypatch, capsys, tmp_path):
    """docs/transformers.md's example: transformers-style lines translate the sample, compute a small
    loss for its own text, and save a new model that loads again."""
    text = (ROOT / "docs" / "transformers.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    monkeypatch.chdir(ROOT)
    exec(compile(block.replace("/tmp/new-model", str(tmp_path / "new")), "transformers.md", "exec"), {})  # noqa: S102
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("['dreiundsiebzig'] [")
    words = lines[1].split()  # loss, the logits' shape, encoder hidden states, cross-attention maps
    assert float(words[0]) < 0.5 and words[-2:] == ["5", "2"]  # the demo model: 4 encoder layers + 1, 2 decoder
    assert minis2t2.load(tmp_path / "new").config.decoder.d_model == 64


def test_the_porting_recipe_runs_as_written(tmp_path, monkeypatch, capsys):
    """README's "Checking another implementation": its commands run as printed (speech.wav and DIR
    filled in), with a port that writes exactly the reference, so compare finds every tensor OK."""
    import shlex
    import shutil

    from minis2t2.cli import main

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Checking another implementation")[1]
    (block,) = re.findall(r"```bash\n(.*?)```", section.split("\n## ")[0], re.DOTALL)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("minis2t2 ")]
    assert [c.split()[1] for c in commands] == ["trace", "compare"]
    sample = ROOT / "weights" / "numbers-en-de" / "samples" / "073_piper-en_US-joe-medium_16000.wav"
    monkeypatch.chdir(tmp_path)
    trace = shlex.split(commands[0].replace("speech.wav", str(sample)).replace("DIR", str(sample.parents[1])))
    assert main(trace[1:]) == 0
    shutil.copyfile("ref.safetensors", "mine.safetensors")  # the port: here, the reference itself
    assert main(shlex.split(commands[1])[1:]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "all OK" and lines[-2].endswith(" OK") and "DIFF" not in lines[-2]


def test_the_quick_start_command_translates_its_sample_as_the_readme_says(capsys):
    """The README's first command names a shipped sample; what the README says of it (the English,
    the German, the recording rate) is the sample's expected.json entry and file, and the command
    prints that German."""
    import soundfile

    from minis2t2.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    path = ROOT / re.search(r"pip install -e \. && minis2t2 translate (\S+)", readme).group(1)
    expected = json.loads((path.parent / "expected.json").read_text(encoding="utf-8"))[path.name]
    said = re.search(r'\(spoken English\s+"([^"]+)"([^)]*)becomes\s+`([^`]+)`\)', readme)
    assert (said.group(1), said.group(3)) == (expected["english"], expected["german"])
    assert f"{soundfile.info(path).samplerate / 1000:g} kHz" in " ".join(said.group(2).split())
    assert main(["translate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}\t{expected['german']}\n"
