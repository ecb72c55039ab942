"""The README's Python runs as written, from the repository root."""

import re
from pathlib import Path

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
    assert float(lines[3].split()[0]) > 0, "a finite, positive loss from the labels"
