"""Sanitizers (issue 6, point 4): every example spec trains two steps in the generated C built with
AddressSanitizer and UndefinedBehaviorSanitizer, no recovery, compared with the NumPy reference after
every step. Any report aborts the harness, and `verify` turns a non-zero exit into E903, so a report
fails the test.

Specs whose context at their own batch size exceeds 8 MB (the full VGGs, MLP3, MLP4) run at batch 4:
the same code paths, loops and bounds (batch enters only as a loop count), within the CI budget.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import nitrogen
from nitrogen import verify
from nitrogen.layout import plan
from nitrogen.pipeline import analyse

from conftest import SPECS

SANITIZE = ("-std=c99", "-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
BIG = 8_000_000  # context bytes above which a spec runs at batch 4
ALL = sorted(p.name for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("spec", ALL)
def test_every_spec_trains_clean_under_asan_and_ubsan(spec: str, tmp_path: Path) -> None:
    model = nitrogen.load_spec(SPECS / spec)
    program, report = analyse(model)
    if plan(program, report).ctx_bytes > BIG:
        model = replace(model, train=replace(model.train, batch_size=4))
    outcome = verify.run(model, steps=2, seed=5, cflags=SANITIZE, workdir=str(tmp_path / "work"), n_eval=3)
    assert outcome.ok, str(outcome.mismatch)


def test_the_sanitizer_flags_catch_an_overflow(tmp_path: Path) -> None:
    """Control: the same flags abort a program with a heap overflow and one with a signed overflow."""
    for name, body in (("heap", "int *p = malloc(4 * sizeof *p); p[argc + 3] = 1; int r = p[0]; free(p); return r;"),
                       ("signed", "volatile int x = 2147483647; int y = x + argc; return y == 0;")):
        source = tmp_path / f"{name}.c"
        source.write_text(f"#include <stdlib.h>\nint main(int argc, char **argv) {{ (void)argv; {body} }}\n")
        exe = tmp_path / name
        subprocess.run([verify.find_cc(), *SANITIZE, "-Wno-error", "-o", str(exe), str(source)], check=True,
                       capture_output=True)
        proc = subprocess.run([str(exe)], capture_output=True, text=True)
        assert proc.returncode != 0 and ("AddressSanitizer" in proc.stderr or "runtime error" in proc.stderr)
