"""The README's Python runs as written, from the repository root."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_snippets_run(monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the README has Python snippets"
    monkeypatch.chdir(ROOT)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 -- the README's own snippet, run as written
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert lines[0] == lines[1], "a file and its waveform (with its rate) translate alike"
    assert float(lines[3].split()[0]) > 0, "a finite, positive loss from the labels"
