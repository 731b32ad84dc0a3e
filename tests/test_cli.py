"""The command line as a user meets it: exit codes, output, diagnostics without tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nitrogen.cli import main

from conftest import SPECS


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", *args], capture_output=True, text=True, cwd=cwd)


def test_check_prints_the_bounds_table() -> None:
    proc = run("check", str(SPECS / "mlp1_mnist.yaml"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split()[:4] == ["layer", "geometry", "H_o", "SF"]
    assert lines[3].split()[:5] == ["b0", "linear", "784->100", "1", "200704"]
    assert any(line.split()[:4] == ["tensor", "interval", "bits", "C"] for line in lines)
    row = next(line for line in lines if line.startswith("b0_acc "))
    assert row.split()[1:5] == ["[-3288233984,", "3288233984]", "33", "int64_t"]
    assert any(line.startswith("b0_w.lr_amp") for line in lines)


def test_semantics_override() -> None:
    proc = run("check", str(SPECS / "mlp1_mnist.yaml"), "--semantics", "reference")
    assert proc.returncode == 0
    assert "reference semantics" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("b0_acc "))
    assert "int32_t" in row and "wrap" in row


def test_compile_writes_header_and_source(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run("compile", str(SPECS / "tiny_mlp.yaml"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tiny_mlp.c", "tiny_mlp.h"]


def test_bad_spec_gives_one_line_diagnostic_and_exit_1(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput: [1, 4, 4]\nnum_classes: 3\nlayers:\n  - {kind: linaer, out_features: 3}\n")
    out = tmp_path / "out"
    proc = run("compile", str(spec), "-o", str(out))
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first == f"{spec}:5:12: error[E207]: unknown layer kind 'linaer'"
    assert "    5 |   - {kind: linaer, out_features: 3}" in proc.stderr
    assert "did you mean 'linear'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing written on error


def test_out_of_bounds_spec_diagnostic(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text("name: huge\ninput: [1, 1, 8]\nnum_classes: 255\ntarget_value: 127\nweight_bits: 32\n"
                    "layers:\n  - {kind: linear, out_features: 1000}\ntrain: {batch_size: 65536}\n")
    proc = run("check", str(spec))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{spec}:7:5: error[E301]: ")
    assert "note: worst case of" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [b"", b"\xff\xfe not utf8", b"name: [unclosed\n", b"- just\n- a list\n"])
def test_garbage_never_gives_a_traceback(tmp_path: Path, content: bytes) -> None:
    spec = tmp_path / "g.yaml"
    spec.write_bytes(content)
    proc = run("check", str(spec))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{spec}:") and "error[E" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file() -> None:
    proc = run("check", "no/such/spec.yaml")
    assert proc.returncode == 1 and "no such spec file" in proc.stderr


def test_verify_success_and_mismatch_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(SPECS / "tiny_mlp.yaml"), "--steps", "3"]) == 0
    assert capsys.readouterr().out.strip() == "bit-exact over 3 steps"
    from nitrogen import reference

    original = reference.Model.train_step

    def off_by_one(self: reference.Model, x, labels):  # type: ignore[no-untyped-def]
        stats = original(self, x, labels)
        params = self.params
        params["blocks.0.forward.weight"][0, 0] += 1
        self.set_params(params)
        return stats

    monkeypatch.setattr(reference.Model, "train_step", off_by_one)
    assert main(["verify", str(SPECS / "tiny_mlp.yaml"), "--steps", "3", "--seed", "2", "--batch", "3"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("mismatch: step 1, blocks.0.forward.weight[0][0]: c=")
    kept = err.split("build and inputs kept in ", 1)[1].strip()
    assert Path(kept, "stdin.bin").exists()  # everything needed to debug the mismatch stays
    shutil.rmtree(kept)


def test_python_dash_m_and_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("nitrogen ")


def test_tool_output_is_indented_under_a_one_line_header() -> None:
    """A compiler's or make's output goes into `details`: every line of it is indented, so the only
    unindented line is the `error[Ennn]:` header, and control characters in it are escaped."""
    from nitrogen.errors import Diagnostic

    text = Diagnostic("E902", "the generated C did not compile", hint="command: gcc m.c",
                      details=("m.c:1:1: error: bad\n\tint x\x1b[31m;\nerror: 1 error",)).render()
    assert text.split("\n") == ["error[E902]: the generated C did not compile",
                                "  hint: command: gcc m.c",
                                "    m.c:1:1: error: bad",
                                "    \tint x\\x1b[31m;",
                                "    error: 1 error"]


def test_user_strings_in_messages_are_escaped() -> None:
    from nitrogen.errors import Diagnostic, Span

    text = Diagnostic("E208", "name 'a\nb\u2028c' is not valid", Span("s.yaml", 1, 7), notes=("x\ty",),
                      hint="try 'a\x00b'").render()
    assert text.split("\n") == ["s.yaml:1:7: error[E208]: name 'a\\nb\\u2028c' is not valid",
                                "  note: x\\ty", "  hint: try 'a\\x00b'"]


def test_caret_line_follows_tabs_wide_and_combining_characters() -> None:
    from nitrogen.errors import Diagnostic, Span

    line = "\tx: \"e\u0301\u540d\" bad"  # tab, 'é' as e + combining acute, a double-width CJK character
    text = Diagnostic("E201", "m", Span("s.yaml", 1, line.index("bad") + 1)).render({"s.yaml": [line]})
    # under: tab -> tab; 'x: "' -> 4 spaces; 'e' -> 1; the combining mark -> 0; the CJK character -> 2; '" ' -> 2
    assert text.split("\n")[2] == "      | " + "\t" + " " * 4 + " " + "" + " " * 2 + " " * 2 + "^"


def _write_specs(root: Path) -> None:
    root.mkdir()
    shutil.copy(SPECS / "tiny_mlp.yaml", root / "tiny_mlp.yaml")
    shutil.copy(SPECS / "tiny_cnn.ng", root / "tiny_cnn.ng")
    (root / "a_bad.yaml").write_text("name: a_bad\ninput: [1, 4, 4]\nnum_classes: 3\nlayers: [{kind: linaer}]\n")
    (root / "z_bad.ng").write_text("model z_bad {\n  input = [1, 4, 4]\n  num_classes = 3\n  layers { linear(0) }\n}\n")


def test_compile_all_reports_every_bad_spec_and_compiles_the_others(tmp_path: Path) -> None:
    """It used to stop at the first bad spec (here a_bad.yaml, first in order), compiling nothing after it."""
    _write_specs(tmp_path / "specs")
    proc = run("compile", "--all", str(tmp_path / "specs"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny_cnn", "tiny_mlp"]
    heads = [line for line in proc.stderr.splitlines() if "error[" in line]
    assert [h.split(": error[")[1][:4] for h in heads] == ["E207", "E206"]
    assert heads[0].startswith(f"{tmp_path / 'specs' / 'a_bad.yaml'}:4:")
    assert heads[1].startswith(f"{tmp_path / 'specs' / 'z_bad.ng'}:4:")
    assert proc.stderr.rstrip().endswith(f"2 of 4 specs failed: {tmp_path / 'specs' / 'a_bad.yaml'}, "
                                         f"{tmp_path / 'specs' / 'z_bad.ng'}")
    assert "Traceback" not in proc.stderr


def test_compile_all_without_specs_is_an_error(tmp_path: Path) -> None:
    """Outside the repository `compile --all` silently did nothing, with exit 0."""
    proc = run("compile", "--all", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("specs: error[E001]: no such spec directory\n"), proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run("compile", "--all", str(tmp_path / "empty"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{tmp_path / 'empty'}: error[E001]: no specs (*.yaml, *.ng) in this directory")


def test_allow_option_silences_warnings(tmp_path: Path) -> None:
    spec = tmp_path / "pool.yaml"
    spec.write_text("name: pool\ninput: [1, 9, 9]\nnum_classes: 3\nlayers: [{kind: maxpool}, {kind: linear, "
                    "out_features: 3}]\n")
    assert "warning[W202]" in run("check", str(spec)).stderr
    proc = run("check", str(spec), "--allow", "W202")
    assert proc.returncode == 0 and proc.stderr == ""
    proc = run("check", str(spec), "--allow", "E217")
    assert proc.returncode == 2 and "not a list of warning codes" in proc.stderr


def test_semantics_override_of_a_spec_with_weight_bits_warns() -> None:
    """The shipped specs state weight_bits: 16 and are run with --semantics reference: allowed, with W204."""
    proc = run("check", str(SPECS / "mlp1_mnist.yaml"), "--semantics", "reference")
    assert proc.returncode == 0
    assert proc.stderr.startswith(f"{SPECS / 'mlp1_mnist.yaml'}:7:1: warning[W204]: weight_bits = 16 is ignored")
    assert run("check", str(SPECS / "mlp1_mnist.yaml"), "--semantics", "reference", "--allow", "W204").stderr == ""


def test_shipped_specs_check_without_warnings() -> None:
    for name in ("tiny_cnn.yaml", "tiny_cnn.ng", "vgg8b_mnist.yaml"):
        proc = run("check", str(SPECS / name))
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_bits_column_counts_no_sign_bit_for_unsigned_tensors() -> None:
    proc = run("check", str(SPECS / "mlp1_mnist.yaml"))
    row = next(line for line in proc.stdout.splitlines() if line.startswith("labels "))
    assert row.split()[1:5] == ["[0,", "9]", "4", "uint8_t"]  # it said 5


def test_every_command_explains_itself_with_an_example() -> None:
    """`nitrogen` alone prints the help (exit 0); every command's --help says what SPEC is and shows an example
    that names the command."""
    import contextlib
    import io

    from nitrogen.cli import EXAMPLES, build_parser, main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([]) == 0
    assert "usage: nitrogen" in out.getvalue() and "first steps:" in out.getvalue()
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == set(EXAMPLES)
    for name, sub in commands.items():
        text = sub.format_help()
        assert f"\n  nitrogen {name} " in text, name
        if name != "fetch":
            assert "SPEC" in text and ".yaml" in text and ".ng" in text, name
