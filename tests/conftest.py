"""Shared fixtures: repository paths, the C compilers, spec loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import nitrogen

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GENERATED = ROOT / "generated"
YAML_SPECS = sorted(SPECS.glob("*.yaml"))
STRICT_FLAGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion", "-Wcast-qual",
                "-Wstrict-prototypes", "-Wshadow", "-Werror"]


def compilers() -> list[str]:
    return [cc for cc in ("gcc", "clang") if shutil.which(cc)]


@pytest.fixture(params=compilers() or [pytest.param("none", marks=pytest.mark.skip(reason="no C compiler"))])
def cc(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def load(name: str) -> nitrogen.Model:
    return nitrogen.load_spec(SPECS / name)


def spec_from_text(text: str, file: str = "t.yaml") -> nitrogen.Model:
    return nitrogen.parse_spec_text(text, file)


def isolate_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide the machine's data sets from nitrogen.data: an empty cache, no $NITROGEN_DATA, no installed
    packages, no Debian data directory (for the data fixtures of test_data.py and test_own_data.py)."""
    from nitrogen import data

    monkeypatch.delenv("NITROGEN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data, "_package_dirs", lambda package: [])
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "usr-share-fashion")
    return tmp_path
