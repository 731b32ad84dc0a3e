"""nitrogen is MIT-licensed: LICENSE, pyproject.toml and the generated files say the same. Every file
nitrogen renders from its templates (model, harness, every firmware file) starts with an SPDX line in its
own comment syntax and a sentence stating that it is MIT-licensed like the templates it comes from."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nitrogen
from nitrogen import emit
from nitrogen.pipeline import compile_model

from conftest import ROOT, SPECS

SPDX = "SPDX-License-Identifier: MIT"
# The SPDX line as each file type writes it, within the file's first three lines.
SPDX_LINES = {".c": rf"/\* {SPDX} \*/", ".h": rf"(/\* {SPDX} \*/| \* @copyright {SPDX})", ".ld": rf"/\* {SPDX} \*/",
              "Makefile": f"# {SPDX}", ".cmake": f"# {SPDX}", ".md": f"<!-- {SPDX} -->"}


def test_license_file_and_pyproject_agree() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT" == emit.LICENSE
    assert project["project"]["license-files"] == ["LICENSE"]
    # PEP 639 `license-files` (a list of globs) needs hatchling 1.27 or later.
    assert any(re.fullmatch(r"hatchling>=1\.(2[7-9]|[3-9]\d)(\.\d+)?", r) for r in project["build-system"]["requires"])
    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[:3] == ["MIT License", "", "Copyright (c) 2026 the nitrogen authors"]
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert "The above copyright notice and this permission notice shall be included in all" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def _check(name: str, text: str) -> None:
    kind = "Makefile" if name == "Makefile" else Path(name).suffix
    head = text.splitlines()[:3]
    assert any(re.fullmatch(SPDX_LINES[kind], line) for line in head), f"{name}: no SPDX line in {head}"
    assert "like nitrogen's templates, this file is MIT-licensed." in " ".join(text.splitlines()[:8]), name
    assert "2026" not in text, name  # deterministic output: no date, not even the copyright year


def test_every_written_file_starts_with_the_spdx_line(tmp_path: Path) -> None:
    host, fw = tmp_path / "host", tmp_path / "fw"
    for args in (("-o", str(host)), ("--target", "cortex-m0plus", "--steps", "1", "-o", str(fw))):
        proc = subprocess.run([sys.executable, "-m", "nitrogen", "compile", str(SPECS / "tiny_cnn.yaml"), *args],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    written = [*host.iterdir(), *fw.iterdir()]
    assert {p.name for p in fw.iterdir()} == {"tiny_cnn.h", "tiny_cnn.c", *(
        n.format(p="tiny_cnn") for n in emit.FIRMWARE_FILES)}
    for path in written:
        _check(path.name, path.read_text())
    compiled = compile_model(nitrogen.load_spec(SPECS / "tiny_cnn.yaml"))
    _check("harness.c", emit.emit_harness(compiled.program))
    # Every template that renders a whole file is one of those checked above (the rest are included parts).
    templates = ROOT / "templates"
    whole = {p.name for p in templates.glob("*.j2") if not p.name.startswith("_")}
    assert whole == {"model.h.j2", "model.c.j2", "harness.c.j2"}
    assert {p.name for p in (templates / "firmware").glob("*.j2")} == set(emit.FIRMWARE_FILES.values())
