"""The package type-checks (mypy, as installed by the dev extra) and has no unused imports or names."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_mypy_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "nitrogen"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pyflakes_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "pyflakes", "nitrogen", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
