"""The bad-spec corpus (`tests/bad_specs/`): every user mistake ends with exit code 1 and one diagnostic
per problem, `file:line:col: error[Ennn]: message`, with the source line, the computed fact and a hint.

Two checks per spec, on purpose independent of each other:
- the hand-written first line `# expect: E207 5:12[, E206 6:3 ...]` must match the codes and positions of
  the output (what a person decided the diagnostics should be);
- the whole stderr must equal the snapshot `NNN_reason.stderr` next to the spec (a regression check).
  Refresh the snapshots with `NITROGEN_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_bad_specs.py`, then
  read every changed one before committing it.

Paths are relative to the repository root (the tests run there), so the snapshots do not depend on where
the repository is checked out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nitrogen.cli import main

from conftest import ROOT

CORPUS = ROOT / "tests" / "bad_specs"
SPECS = sorted(p for p in CORPUS.iterdir() if p.suffix in (".yaml", ".ng"))
UPDATE = os.environ.get("NITROGEN_UPDATE_SNAPSHOTS") == "1"

# Specs that cannot carry a `# expect:` comment. Empty files and a UTF-16 file still get a position
# (1:1, the start of the file); the only diagnostic without a line and column is E001, for a path with no
# text to point into (`test_unreadable_spec_is_named_without_a_position`): it reads `path: error[E001]: ...`.
NO_COMMENT = {"017_empty.yaml": "E102 1:1", "018_empty.ng": "E102 1:1", "030_utf16.yaml": "E106 1:1"}

# The categories of issue 6, by corpus number; every spec belongs to at least one.
CATEGORIES: dict[str, tuple[int, ...]] = {
    "syntax errors": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
    "unusual line breaks, tabs and wide characters": (107, 108, 110),
    "empty file": (17, 18, 19, 20),
    "YAML bomb (billion laughs)": (21, 103),
    "YAML keys and values nitrogen does not take": (22, 23, 24, 25, 26, 27),
    "non-UTF-8 bytes": (28, 29, 30),
    "unknown keys": (31, 32, 33, 34, 102, 104),
    "unknown layer kinds": (35, 36, 101, 107, 108, 110),
    "unknown enumerated values": (37, 38, 39, 40, 106),
    "wrong types": (41, 42, 43, 54, 55, 56, 57, 58, 59, 60, 61, 62, 105),
    "duplicate names": (44, 45, 46, 47),
    "missing keys": (48, 49, 50, 51, 52, 53),
    "zero or negative sizes": (63, 64, 66, 70),
    "values out of range": (65, 67, 68, 69),
    "names that are not valid C identifiers": (73, 74, 75, 77, 78, 109),
    "names that are C keywords or reserved": (71, 72, 76),
    "shapes that do not fit": (79, 80, 81, 82, 83, 84, 85, 86, 87, 88),
    "unsupported combinations": (89, 90, 91, 92),
    "absurd sizes": (13, 14, 15, 16, 93, 94, 95, 96, 97, 98, 103),
    "widths that the bounds pass rejects": (99, 100),
    "several problems at once": (101, 102, 125, 126),
    "a brace or string left open in the DSL": (111, 112, 117),
    "YAML spacing and indentation": (113, 114, 115, 132),
    "DSL tokens that cannot come there": (116, 136),
    "options reference semantics cannot reproduce": (118, 119),
    "a spec file over the size limit": (120,),
    "habits from float frameworks": (121, 122, 123, 124, 125, 126, 127, 128, 129),
    "keys in the wrong section": (130, 131),
    "a missing layers list": (133, 134),
    "warning codes in allow": (135,),
}

HEAD = re.compile(r"(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): error\[(?P<code>E\d{3})\]: \S")


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def number(path: Path) -> int:
    return int(path.name.split("_", 1)[0])


def expected(path: Path) -> list[tuple[str, str]]:
    """(code, "line:col") for each diagnostic, from the spec's hand-written first line (or NO_COMMENT)."""
    if path.name in NO_COMMENT:
        text = NO_COMMENT[path.name]
    else:
        first = re.split(rb"\r\n|\r|\n", path.read_bytes(), maxsplit=1)[0].decode("ascii")  # 107 ends lines in CR
        match = re.fullmatch(r"# expect: (.+)", first)
        assert match, f"{path.name}: the first line must be '# expect: Ennn line:col[, ...]'"
        text = match.group(1)
    return [(code, where) for code, where in (item.split() for item in text.split(", "))]


def check_output(path: Path, code: int, out: str, err: str) -> None:
    snapshot = path.with_suffix(".stderr")
    if UPDATE:
        snapshot.write_text(err, encoding="utf-8")
    assert code == 1, err
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err, err
    heads = [line for line in err.splitlines() if "error[" in line and not line.startswith(" ")]
    parsed = [HEAD.match(line) for line in heads]
    assert all(parsed), f"a diagnostic without file:line:col:\n{err}"
    assert {m.group("file") for m in parsed if m} == {relative(path)}
    got = [(m.group("code"), f"{m.group('line')}:{m.group('col')}") for m in parsed if m]
    assert got == expected(path), err
    assert err.endswith(f"\n{len(got)} error{'s' if len(got) != 1 else ''}\n")
    assert snapshot.exists(), f"no snapshot; run with NITROGEN_UPDATE_SNAPSHOTS=1 and read {snapshot.name}"
    assert err == snapshot.read_text(encoding="utf-8"), f"stderr differs from {snapshot.name}:\n{err}"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_bad_spec_gives_its_diagnostics(path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    start = time.monotonic()
    code = main(["check", relative(path)])
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    check_output(path, code, out, err)
    assert elapsed < 10, f"{path.name} took {elapsed:.1f} s; absurd sizes must be rejected from the shapes"


# A real process for the hostile inputs: deep nesting, huge literals, the alias bomb, encodings, absurd
# sizes, an empty file and a bad escape. Address space is capped at 1 GiB, so anything that allocates
# in proportion to a declared size fails here instead of passing by luck.
SUBPROCESS = ("010", "013", "014", "016", "017", "021", "028", "030", "093", "095", "096", "097", "098", "103", "120")


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_AS")
@pytest.mark.parametrize("path", [p for p in SPECS if p.name[:3] in SUBPROCESS], ids=lambda p: p.name)
def test_no_traceback_reaches_a_real_process(path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nitrogen", "check", relative(path)], cwd=ROOT,
                          capture_output=True, encoding="utf-8", env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                          timeout=120, preexec_fn=_limit_memory)
    check_output(path, proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("name", ["021_yaml_billion_laughs.yaml", "035_unknown_layer_kind.yaml",
                                  "094_billion_units.ng", "097_huge_context.yaml", "099_accumulator_beyond_int64.yaml"])
def test_compile_of_a_bad_spec_writes_nothing(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    spec = relative(CORPUS / name)
    fresh = tmp_path / "fresh"
    assert main(["compile", spec, "-o", str(fresh)]) == 1
    assert not fresh.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "net.c").write_text("/* from an earlier compile */\n")
    assert main(["compile", spec, "-o", str(existing)]) == 1
    assert [(p.name, p.read_text()) for p in existing.iterdir()] == [("net.c", "/* from an earlier compile */\n")]
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"{spec}:")


def test_unreadable_spec_is_named_without_a_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """E001 has the `file:` prefix of every other diagnostic, without line and column: there is no text to
    point into (a Span with line 0 renders as the file alone)."""
    (tmp_path / "tiny.yaml").write_text("name: x\n")
    for target, message in ((tmp_path / "missing.yaml", "no such spec file"),
                            (tmp_path / "tyni.yaml", "no such spec file"),
                            (tmp_path, "this is a directory, not a spec file"),
                            (tmp_path / "tiny.yaml" / "x.yaml", "no such spec file")):
        assert main(["check", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{target}: error[E001]: {message}"), err
        assert "Traceback" not in err and err.endswith("\n1 error\n")
    assert main(["check", str(tmp_path / "tyni.yaml")]) == 1
    assert f"hint: did you mean '{tmp_path / 'tiny.yaml'}'?" in capsys.readouterr().err


def _check_in_a_process(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", "check", *args], cwd=ROOT, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=timeout, preexec_fn=_limit_memory)


@pytest.mark.skipif(sys.platform != "linux", reason="uses /dev/zero, mkfifo and RLIMIT_AS")
def test_devices_fifos_and_huge_files_neither_hang_nor_eat_memory(tmp_path: Path) -> None:
    """The spec is read up to 1 MiB + 1 byte (E109), and a FIFO nobody writes to gives E001 at once: before,
    /dev/zero ate memory until a MemoryError (exit 70) and a FIFO blocked forever."""
    proc = _check_in_a_process("/dev/zero")
    assert proc.returncode == 1 and proc.stderr.startswith("/dev/zero:1:1: error[E109]: "), proc.stderr
    assert "character device" in proc.stderr and "Traceback" not in proc.stderr
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    proc = _check_in_a_process(str(fifo))
    assert proc.returncode == 1 and proc.stderr.startswith(f"{fifo}: error[E001]: nothing to read: this is a FIFO")
    proc = _check_in_a_process("/dev/null")
    assert proc.returncode == 1 and proc.stderr.startswith("/dev/null: error[E001]: nothing to read")
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # 50 MB of binary: it was read whole (8 s) before E106
        f.truncate(50 << 20)
    proc = _check_in_a_process(str(big))
    assert proc.returncode == 1 and proc.stderr.startswith(f"{big}:1:1: error[E109]: "), proc.stderr
    assert "note: the file has 52428800 bytes" in proc.stderr
    assert "    1 |" not in proc.stderr  # no source line is shown from a file over the limit


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc/self/fd")
def test_a_spec_piped_in_is_read() -> None:
    """A pipe with a writer (`nitrogen check <(...)`) is still a spec: only a FIFO without one is refused."""
    text = (ROOT / "specs" / "tiny_mlp.yaml").read_bytes()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text)
    os.close(write_fd)
    try:
        from nitrogen import read_spec_text

        assert read_spec_text(f"/proc/self/fd/{read_fd}") == text.decode()
    finally:
        os.close(read_fd)


def test_a_utf8_byte_order_mark_is_not_a_mistake(tmp_path: Path) -> None:
    """Windows editors write one; it used to be 'unexpected character' at 1:1 in the DSL."""
    from nitrogen import load_spec

    for name, text in (("bom.ng", "model net {\n  input = [1, 4, 4]\n  num_classes = 3\n  layers { linear(3) }\n}\n"),
                       ("bom.yaml", "name: net\ninput: [1, 4, 4]\nnum_classes: 3\nlayers: [{kind: linear, "
                                    "out_features: 3}]\n")):
        plain, marked = tmp_path / f"plain_{name}", tmp_path / name
        plain.write_text(text, encoding="utf-8")
        marked.write_text("\ufeff" + text, encoding="utf-8")
        assert load_spec(marked).sha256 == load_spec(plain).sha256


def test_the_corpus_itself() -> None:
    yaml_specs = [p for p in SPECS if p.suffix == ".yaml"]
    dsl_specs = [p for p in SPECS if p.suffix == ".ng"]
    assert len(SPECS) >= 40 and len(yaml_specs) >= 15 and len(dsl_specs) >= 15
    assert all(re.fullmatch(r"\d{3}_[a-z0-9_]+\.(yaml|ng)", p.name) for p in SPECS)
    numbers = [number(p) for p in SPECS]
    assert len(set(numbers)) == len(numbers), "corpus numbers must be unique"
    stems = {p.stem for p in SPECS}
    snapshots = {p.stem for p in CORPUS.glob("*.stderr")}
    assert snapshots == stems or UPDATE, f"specs without a snapshot or snapshots without a spec: {stems ^ snapshots}"
    assert set(NO_COMMENT) <= {p.name for p in SPECS}
    in_categories = {n for members in CATEGORIES.values() for n in members}
    assert in_categories <= set(numbers), f"categories name missing specs: {in_categories - set(numbers)}"
    assert set(numbers) <= in_categories, f"specs in no category: {set(numbers) - in_categories}"
    assert all(CATEGORIES.values())


def test_the_corpus_covers_every_spec_and_bounds_code() -> None:
    """Every E1xx/E2xx/E3xx code the sources can emit has at least one spec that expects it."""
    emitted = set()
    for source in (ROOT / "nitrogen").glob("*.py"):
        emitted |= set(re.findall(r'"(E[123]\d\d)"', source.read_text(encoding="utf-8")))
    covered = {code for p in SPECS for code, _ in expected(p)}
    assert emitted <= covered, f"codes with no bad spec: {sorted(emitted - covered)}"
    assert covered <= emitted, f"expected codes nitrogen never emits: {sorted(covered - emitted)}"


def test_docs_state_the_corpus_size() -> None:
    page = (ROOT / "docs" / "diagnostics.md").read_text()
    yaml_specs, dsl_specs = (sum(p.suffix == s for p in SPECS) for s in (".yaml", ".ng"))
    assert f"holds {len(SPECS)} minimal bad specs ({yaml_specs} YAML, {dsl_specs} DSL)" in page
