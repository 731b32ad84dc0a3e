"""Generated code is an artifact under review: regenerating every spec must give the committed bytes,
the YAML and DSL forms of a network must give the same bytes, and output is deterministic."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

import nitrogen
from nitrogen.pipeline import compile_model

from conftest import GENERATED, SPECS, YAML_SPECS


@pytest.mark.parametrize("spec", YAML_SPECS, ids=lambda p: p.stem)
def test_generated_files_are_up_to_date(spec: Path) -> None:
    compiled = compile_model(nitrogen.load_spec(spec))
    for name, text in compiled.files.items():
        committed = GENERATED / compiled.model.name / name
        assert committed.exists(), f"{committed} missing: run `nitrogen compile --all`"
        old = committed.read_text()
        if old != text:
            diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(committed), "new", n=1))
            pytest.fail(f"{committed} is stale; run `nitrogen compile --all`\n{diff[:3000]}")


@pytest.mark.parametrize("dsl", sorted(SPECS.glob("*.ng")), ids=lambda p: p.stem)
def test_dsl_and_yaml_generate_identical_c(dsl: Path) -> None:
    a = compile_model(nitrogen.load_spec(dsl)).files
    b = compile_model(nitrogen.load_spec(dsl.with_suffix(".yaml"))).files
    assert a == b


def test_output_is_deterministic_and_has_no_timestamp() -> None:
    spec = SPECS / "tiny_mlp.yaml"
    first = compile_model(nitrogen.load_spec(spec)).files
    second = compile_model(nitrogen.load_spec(spec)).files
    assert first == second
    header = first["tiny_mlp.h"]
    assert nitrogen.__version__ in header and nitrogen.load_spec(spec).sha256 in header
    for year in ("2024", "2025", "2026", "2027"):
        assert year not in header


def test_every_generated_dir_has_a_spec() -> None:
    names = {nitrogen.load_spec(p).name for p in YAML_SPECS}
    assert {d.name for d in GENERATED.iterdir() if d.is_dir()} == names
