"""docs/data.md's worked example runs as written: its Python snippet writes the CSV, its spec trains on it
with the real CLI (`python -m nitrogen train`) well above chance; and the same windows as an int8 .npz of
feature vectors with an explicit split do too."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

DOC = ROOT / "docs" / "data.md"
EXAMPLE = "## Worked example: activity recognition"

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")


def example_blocks() -> dict[str, list[str]]:
    """The fenced blocks of the worked example, by language (python, yaml, sh, and '' for plain text)."""
    text = DOC.read_text(encoding="utf-8")
    assert EXAMPLE in text, f"{DOC} has no section '{EXAMPLE}'"
    section = text.split(EXAMPLE, 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {}
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.S | re.M):
        blocks.setdefault(lang, []).append(body)
    return blocks


def train(tmp: Path, args: list[str], out: Path) -> float:
    """Run `nitrogen train ARGS --out OUT` in tmp; return metrics.json's best_test_acc."""
    proc = subprocess.run([sys.executable, "-m", "nitrogen", "train", *args, "--out", str(out)], cwd=tmp,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"nitrogen train {shlex.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return float(json.loads((out / "metrics.json").read_text())["best_test_acc"])


@needs_cc
def test_worked_example_trains_from_the_csv_and_from_an_int8_npz(tmp_path: Path) -> None:
    blocks = example_blocks()
    (snippet,), (spec,), (command,) = blocks["python"], blocks["yaml"], blocks["sh"]
    subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "activity.csv").is_file()
    name = re.search(r"^name: (\S+)", spec, flags=re.M)
    assert name is not None
    (tmp_path / f"{name.group(1)}.yaml").write_text(spec)
    argv = shlex.split(command.strip())
    assert argv[:2] == ["nitrogen", "train"], command
    classes = int(re.search(r"^num_classes: (\d+)", spec, flags=re.M).group(1))  # type: ignore[union-attr]
    chance = 100.0 / classes
    acc = train(tmp_path, argv[2:], tmp_path / "run-csv")
    assert acc >= 2 * chance, f"the documented example reached {acc}% (chance {chance:.0f}%)"
    assert any("best test accuracy" in line for line in blocks[""]), "the doc shows the result line"

    # The same windows as an .npz of int8 feature vectors (v - 128), with the split made explicit.
    rows = np.loadtxt(tmp_path / "activity.csv", delimiter=",", skiprows=1, dtype=np.int64)
    y, x = rows[:, 0], (rows[:, 1:] - 128).astype(np.int8)
    test = np.arange(len(y)) % 5 == 4
    np.savez(tmp_path / "windows.npz", train_x=x[~test], train_y=y[~test], test_x=x[test], test_y=y[test])
    args = [a if a != "activity.csv" else "windows.npz" for a in argv[2:]]
    acc = train(tmp_path, args, tmp_path / "run-npz")
    assert acc >= 2 * chance, f"the int8 .npz reached {acc}% (chance {chance:.0f}%)"
