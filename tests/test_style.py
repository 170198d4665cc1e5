"""The house style, enforced by the tool the field uses: ``ruff check`` (pycodestyle at the code's width of 120,
pyflakes, import order, pyupgrade; configured in pyproject.toml) passes on the whole repository."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    beside = Path(sys.executable).with_name("ruff")  # the environment's own, installed with the dev extra
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return [found]


def test_ruff_finds_nothing():
    out = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_catches_what_it_is_meant_to(tmp_path):
    """The check is live: a line past the width, an unused import and an unsorted import block are each found."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nx = '" + "a" * 130 + "'\n")
    out = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "--config",
                          str(ROOT / "pyproject.toml"), str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1
    for code in ("E501", "F401", "I001"):
        assert f"{code} " in out.stdout, out.stdout
