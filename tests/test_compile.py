"""Every committed model compiles warning-free under strict flags with gcc and clang, uses no floating
point (-O0 -mgeneral-regs-only) and only the freestanding headers it is allowed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import GENERATED, STRICT_FLAGS

MODELS = sorted(p for p in GENERATED.glob("*/*.c"))
FORBIDDEN = re.compile(r"\b(float|double|malloc|calloc|realloc|free|printf|fprintf|stdio|math\.h|setjmp)\b")


def _cc(cc: str, args: list[str]) -> None:
    proc = subprocess.run([cc, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize("source", MODELS, ids=lambda p: p.parent.name)
def test_strict_warnings(cc: str, source: Path) -> None:
    _cc(cc, [*STRICT_FLAGS, "-O2", "-c", str(source), "-o", "/dev/null"])


@pytest.mark.parametrize("source", MODELS, ids=lambda p: p.parent.name)
def test_no_floating_point_on_the_host(source: Path) -> None:
    _cc("gcc", ["-std=c99", "-O0", "-mgeneral-regs-only", "-Werror", "-c", str(source), "-o", "/dev/null"])


@pytest.mark.parametrize("source", MODELS, ids=lambda p: p.parent.name)
def test_only_freestanding_headers_and_no_forbidden_names(source: Path) -> None:
    for path in (source, source.with_suffix(".h")):
        text = path.read_text()
        includes = set(re.findall(r'#include\s+[<"]([^>"]+)[>"]', text))
        assert includes <= {"stdint.h", "stddef.h", f"{source.stem}.h"}, includes
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert not FORBIDDEN.search(code), FORBIDDEN.search(code)
        assert "[]" not in code.replace("tensor_sizes[]", "")  # no flexible or unsized arrays


def test_no_recursion_or_vla_in_generated_code() -> None:
    # -Wvla turns any variable-length array into an error; recursion: each function body calls only helpers.
    source = GENERATED / "tiny_mlp" / "tiny_mlp.c"
    _cc("gcc", ["-std=c99", "-Wvla", "-Werror", "-c", str(source), "-o", "/dev/null"])
    text = source.read_text()
    for fn in re.findall(r"^tiny_mlp_status_t (tiny_mlp_\w+)\(", text, flags=re.M):
        body = text.split(f"{fn}(", 1)[1].split("\n}\n", 1)[0]
        assert f"{fn}(" not in body


def test_longest_name_keeps_every_identifier_within_c99_limits() -> None:
    """Every identifier the generator derives from the model name (functions, types, macros, statics) stays
    within C99's 63 significant characters when the name has the longest allowed length (spec.py)."""
    from nitrogen.spec import MAX_NAME_CHARS

    longest = 0
    for source in MODELS:
        name = source.stem
        for path in (source, source.with_suffix(".h")):
            found = re.findall(rf"\b(?:{name}|{name.upper()})(_\w+)", path.read_text())
            longest = max(longest, *(len(suffix) for suffix in found))
    assert longest > 10  # the scan found the prefixed identifiers
    assert MAX_NAME_CHARS + longest <= 63, longest
