"""The README's C example compiles against a generated model, runs, and learns its toy task; the README
shows that same file and the test command that CI runs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import GENERATED, ROOT, STRICT_FLAGS

EXAMPLE = ROOT / "tests" / "readme_example.c"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_readme_example_compiles_and_learns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = GENERATED / "tiny_mlp"
    exe = tmp_path / "example"
    build = ["gcc", *[f for f in STRICT_FLAGS if f != "-Wconversion"], "-O2", f"-I{model}", "-o", str(exe),
             str(EXAMPLE), str(model / "tiny_mlp.c")]
    proc = subprocess.run(build, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip() == "correct 8/8"


def test_readme_shows_the_example_and_the_ci_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    body = EXAMPLE.read_text().split("\n", 2)[2]  # everything after the two comment lines
    assert body.strip() in readme
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in ci.splitlines() if line.startswith("python -m pytest"))
    assert test_command in readme


def test_readme_spec_examples_are_the_mlp1_spec() -> None:
    import re

    import nitrogen

    readme = (ROOT / "README.md").read_text()
    yaml_text = re.search(r"```yaml\n(name: mlp1_mnist.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    dsl_text = re.search(r"```\n(model mlp1_mnist \{.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    want = nitrogen.load_spec(ROOT / "specs" / "mlp1_mnist.yaml").canonical()
    assert nitrogen.parse_spec_text(yaml_text, "readme.yaml").canonical() == want
    assert nitrogen.parse_spec_text(dsl_text, "readme.ng").canonical() == want
