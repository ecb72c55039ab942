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
