"""Installed like any package: a wheel carries the shipped demo model, so that an installed
minis2t2 translates with it from any folder, by the CLI's default and by name."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "weights" / "numbers-en-de" / "samples"


def run(*args, cwd=None):
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_wheel_carries_the_demo_model(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for name in ("minis2t2", "weights"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", source, "-w", tmp_path / "dist")
    (wheel,) = (tmp_path / "dist").glob("minis2t2-*.whl")

    # numpy, scipy, soundfile and safetensors come from this environment; minis2t2 only from the wheel
    run(sys.executable, "-m", "venv", "--system-site-packages", tmp_path / "venv")
    python, cli = tmp_path / "venv" / "bin" / "python", tmp_path / "venv" / "bin" / "minis2t2"
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    expected = json.loads((SAMPLES / "expected.json").read_text())
    name = min(expected)
    shutil.copy(SAMPLES / name, elsewhere / name)
    assert run(cli, "translate", name, cwd=elsewhere) == f"{name}\t{expected[name]['german']}\n"
    script = ("import minis2t2, sys; m = minis2t2.load('numbers-en-de'); "
              "print(minis2t2.__file__); print(m.translate(sys.argv[1]))")
    where, text = run(python, "-c", script, name, cwd=elsewhere).splitlines()
    assert Path(where).is_relative_to(tmp_path / "venv"), f"imported {where}, not the installed wheel"
    assert text == expected[name]["german"]
