"""Atomic output: `compile` stages its files and publishes them all or nothing; a failure at any point
leaves the output directory exactly as it was (training runs: tests/test_runs.py). Truncated or corrupt
inputs to the generated C harness give a clear error and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nitrogen
from nitrogen import cli, outdir, verify
from nitrogen.emit import emit_harness
from nitrogen.pipeline import compile_model

from conftest import ROOT, SPECS


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` (relative path -> bytes), and the set of directories."""
    out = {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    out.update({str(p.relative_to(directory)) + "/": b"" for p in directory.rglob("*") if p.is_dir()})
    return out


def _prepare(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True)
    (directory / "notes.txt").write_text("the user's own file\n")
    (directory / "tiny_mlp.h").write_text("/* an older header that a successful compile would replace */\n")
    return _snapshot(directory)


@pytest.mark.parametrize("fail_at", [1, 2])
def test_compile_failing_mid_publish_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], fail_at: int) -> None:
    """os.replace fails on its n-th call while the files are moved into place: every move already made
    is undone, the replaced header is back, no staging or backup directory is left, exit 1 with E430."""
    out = tmp_path / "out"
    before = _prepare(out)
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src: object, dst: object) -> None:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(outdir.os, "replace", flaky)
    code = cli.main(["compile", str(SPECS / "tiny_mlp.yaml"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "error[E430]" in err and "No space left on device" in err and "Traceback" not in err
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_compile_into_a_file_path_is_a_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken"
    target.write_text("not a directory")
    assert cli.main(["compile", str(SPECS / "tiny_mlp.yaml"), "-o", str(target)]) == 1
    assert "error[E430]" in capsys.readouterr().err
    assert target.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_compile_success_keeps_other_files_and_replaces_its_own(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _prepare(out)
    assert cli.main(["compile", str(SPECS / "tiny_mlp.yaml"), "-o", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "the user's own file\n"
    assert (out / "tiny_mlp.h").read_text().startswith("/**\n * @file tiny_mlp.h")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_firmware_compile_into_a_new_nested_directory_rolls_back_completely(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A failure on the last of the ten firmware files removes the directories the publish created."""
    out = tmp_path / "fw"
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src: object, dst: object) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(outdir.os, "replace", flaky)
    code = cli.main(["compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m4", "-o", str(out)])
    assert code == 1 and "E430" in capsys.readouterr().err
    assert calls["n"] == 10  # nine files were in place; the undo removed them (they replaced nothing)
    assert list(tmp_path.iterdir()) == []


def test_staged_directory_error_inside_the_block_publishes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = _prepare(out)
    with pytest.raises(RuntimeError):
        with outdir.staged_directory(out) as stage:
            (stage / "metrics.csv").write_text("half")
            (stage / "c").mkdir()
            (stage / "c" / "model.c").write_text("half")
            raise RuntimeError("training failed")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---- the generated C harness: truncated or corrupt input -----------------------------------------------

@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = nitrogen.load_spec(SPECS / "tiny_mlp.yaml")
    compiled = compile_model(model)
    work = tmp_path_factory.mktemp("harness")
    for name, text in compiled.files.items():
        (work / name).write_text(text)
    (work / "harness.c").write_text(emit_harness(compiled.program))
    exe = work / "harness"
    subprocess.run([verify.find_cc(), *verify.CFLAGS, "-o", str(exe), str(work / "harness.c"),
                    str(work / "tiny_mlp.c")], check=True)
    return exe


def _valid_input(steps: int = 2) -> bytes:
    model = nitrogen.load_spec(SPECS / "tiny_mlp.yaml")
    xs, ys = verify.make_batches(model, steps, 1, "random")
    data = np.array([0], dtype=np.uint64).tobytes() + np.array([steps, 1, 1, 0], dtype=np.uint32).tobytes()
    for s in range(steps):
        data += np.array([0], dtype=np.int64).tobytes() + xs[s].tobytes() + ys[s].tobytes()
    ex, ey = verify.make_batches(model, 1, 2, "random")
    return data + ex[0][:1].tobytes() + ey[0][:1].tobytes()


def test_harness_rejects_every_truncation_cleanly(harness: Path) -> None:
    """The C harness reads its binary input with checked reads: every truncation exits 2 with a message
    (no crash, no sanitizer report), the complete input exits 0."""
    data = _valid_input()
    assert subprocess.run([str(harness)], input=data, capture_output=True).returncode == 0
    for cut in range(0, len(data), 7):
        proc = subprocess.run([str(harness)], input=data[:cut], capture_output=True)
        assert proc.returncode == 2, cut
        assert proc.stderr == b"harness: short input\n"


def test_harness_out_of_range_label_is_rejected_by_the_model(harness: Path) -> None:
    """A corrupt label byte reaches train_step, which refuses it with ERR_ARG (-1) in the status record."""
    data = bytearray(_valid_input(steps=1))
    model = nitrogen.load_spec(SPECS / "tiny_mlp.yaml")
    label_at = 8 + 16 + 8 + model.train.batch_size * model.input_len  # header, lr_inv, batch, first label
    data[label_at] = 200
    proc = subprocess.run([str(harness)], input=bytes(data), capture_output=True)
    assert proc.returncode == 0
    params = compile_model(model).program.constant("PARAMS_COUNT")
    records = np.frombuffer(proc.stdout[8 + 4 * params + 8:][:8], dtype=np.int64)
    assert int(records[0]) == -1


def test_cli_never_leaves_staging_directories(tmp_path: Path) -> None:
    """A bad spec through a real process: exit 1, nothing created next to the output directory."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: [1, 2, 2]\nnum_classes: 2\nlayers: [{kind: linaer, out_features: 2}]\n")
    proc = subprocess.run([sys.executable, "-m", "nitrogen", "compile", str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "E207" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
