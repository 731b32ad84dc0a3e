"""Run directories of `nitrogen train` (nitrogen/rundir.py): validated before any work, never merged, written
epoch by epoch, and resumed exactly: a run stopped by SIGINT, SIGKILL or a crash at any point of an epoch's
commit and then resumed ends with the same metrics.csv, trainer.json, last.ngck and best.ngck, byte for
byte, as a run that was never stopped, while the plateau rule and early stopping fire."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nitrogen
from nitrogen import rundir
from nitrogen.data import Dataset
from nitrogen.errors import NitrogenError
from nitrogen.train import train

from conftest import ROOT, spec_from_text

pytestmark = pytest.mark.skipif(not any(os.path.exists(f"/usr/bin/{cc}") for cc in ("cc", "gcc", "clang")),
                                reason="needs a C compiler")

# 784-128-10 at batch 8 on the 5 000-image MNIST sample: about 0.3 s per epoch, and a schedule that fires:
# lr_inv x3 after epochs 8 and 11 (or so), early stop at epoch 14, best epoch before the last.
SCHEDULE_SPEC = """\
name: sched_mlp
input: [1, 28, 28]
num_classes: 10
layers:
  - {kind: linear, out_features: 128}
train:
  batch_size: 8
  lr_inv: 256
  epochs: 40
  plateau: {factor: 3, patience: 2, from_epoch: 2, min_delta_pct: 2}
  early_stopping: {patience: 5, from_epoch: 4, min_delta_pct: 2}
"""
KEPT = ("metrics.csv", "trainer.json", "last.ngck", "best.ngck")


def nitrogen_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nitrogen", "train", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop_after(proc: subprocess.Popen[str], epoch: int, sig: signal.Signals) -> tuple[int, str]:
    """Send `sig` as soon as the run reports epoch >= `epoch`; return its exit code and stderr."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        m = re.match(r"epoch\s+(\d+):", line)
        if m and int(m.group(1)) >= epoch:
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + err


def files(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in KEPT}


def state_epoch(run: Path) -> int:
    return int(json.loads((run / "trainer.json").read_text())["state"]["epoch"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The schedule spec trained without interruption (the run every stopped run must equal)."""
    work = tmp_path_factory.mktemp("straight")
    (work / "sched.yaml").write_text(SCHEDULE_SPEC)
    proc = nitrogen_cli("train", "sched.yaml", "--dataset", "mnist5k", "--out", "run", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    history = json.loads((work / "run" / "trainer.json").read_text())["state"]["history"]
    lr = [h["lr_inv"] for h in history]
    summary = json.loads((work / "run" / "metrics.json").read_text())
    # The schedule this test is about really happens: two plateau reductions and an early stop.
    assert len(set(lr)) >= 3 and summary["stopped_early"] and summary["best_epoch"] < summary["epochs_run"], lr
    return work / "run"


def test_sigint_and_sigkill_at_several_epochs_then_resume_is_byte_identical(straight: Path, tmp_path: Path) -> None:
    (tmp_path / "sched.yaml").write_text(SCHEDULE_SPEC)
    final = state_epoch(straight)
    run = tmp_path / "run"
    code, err = stop_after(start("sched.yaml", "--dataset", "mnist5k", "--out", "run", cwd=tmp_path), 3,
                           signal.SIGINT)
    assert code == 130 and "continue it with: nitrogen train --resume run" in err, err
    first = state_epoch(run)
    assert 3 <= first < final
    # An interrupted run is a consistent directory: its finished epochs, their checkpoints, a note.
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"] and summary["epochs_run"] == first
    assert len((run / "metrics.csv").read_text().splitlines()) == first + 1
    assert (run / "curves.png").exists() and (run / "best.ngck").exists()

    code, _ = stop_after(start("--resume", "run", cwd=tmp_path), first + 3, signal.SIGKILL)
    assert code == -signal.SIGKILL
    second = state_epoch(run)
    assert first < second < final
    code, err = stop_after(start("--resume", "run/last.ngck", cwd=tmp_path), second + 3, signal.SIGINT)
    assert code == 130, err
    third = state_epoch(run)
    assert second < third < final
    proc = nitrogen_cli("train", "--resume", "run", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files(run) == files(straight)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["status"] == "early-stopped" and [s["ended"] for s in summary["sessions"]][-1] == "early-stopped"
    assert len(summary["sessions"]) >= 3 and summary["epochs_run"] == final


# ---- a crash at every point of a commit, in-process --------------------------------------------------------

def _small() -> tuple[nitrogen.Model, Dataset]:
    """A 30-12-4 network on separable synthetic data, with a plateau rule and early stopping that fire."""
    model = spec_from_text("""\
name: crash_mlp
input: [1, 6, 5]
num_classes: 4
layers: [{kind: linear, out_features: 12}]
train:
  batch_size: 8
  lr_inv: 64
  epochs: 30
  plateau: {factor: 3, patience: 1, from_epoch: 2, min_delta_pct: 1}
  early_stopping: {patience: 3, from_epoch: 3, min_delta_pct: 1}
""")
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 160).astype(np.uint8)
    x = rng.integers(0, 120, (160, 1, 6, 5)).astype(np.uint8)
    x.reshape(160, -1)[np.arange(160), y * 7] += 120  # one bright pixel per class
    return model, Dataset("synthetic", x[:120], y[:120], x[120:], y[120:], 4, "test")


class _Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs (no interrupt handling, no clean-up)."""


def test_a_crash_at_every_step_of_a_commit_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = _small()
    straight = train(model, data, tmp_path / "straight", seed=5, progress=False)
    assert straight.stopped_early and len({r.lr_inv for r in straight.records}) >= 2
    want = files(tmp_path / "straight")

    # Every rename a run makes, in order (files are only ever replaced by renames: rundir.write_atomic).
    real_replace = os.replace
    renames: list[str] = []

    def recording(src: Any, dst: Any) -> None:
        renames.append(Path(dst).name)
        real_replace(src, dst)
    monkeypatch.setattr(rundir.os, "replace", recording)
    train(model, data, tmp_path / "recorded", seed=5, progress=False)
    monkeypatch.setattr(rundir.os, "replace", real_replace)
    commits = [i for i, name in enumerate(renames) if name == "last.ngck.new"]
    window = range(commits[1], commits[3])  # every rename of epochs 2 and 3 (their commits and summaries)
    assert {"trainer.json", "last.ngck", "metrics.json"} <= {renames[i] for i in window}

    for n in window:  # crash just before rename n, as a SIGKILL would
        run = tmp_path / f"crash{n}"
        calls = {"n": -1}

        def crashing(src: Any, dst: Any, n: int = n) -> None:
            calls["n"] += 1
            if calls["n"] == n:
                raise _Crash
            real_replace(src, dst)
        monkeypatch.setattr(rundir.os, "replace", crashing)
        with pytest.raises(_Crash):
            train(model, data, run, seed=5, progress=False)
        monkeypatch.setattr(rundir.os, "replace", real_replace)
        resumed = train(model, data, run, seed=5, progress=False, resume=True)
        assert files(run) == want, f"crash before rename {n} ({renames[n]})"
        assert [r.test_correct for r in resumed.records] == [r.test_correct for r in straight.records]

    # A crash while the epoch's metrics.csv line is half written: the line is rewritten on resume.
    run = tmp_path / "torn"
    train(model, data, run, seed=5, epochs=2, progress=False)
    with open(run / "metrics.csv", "a") as f:
        f.write("3,12")
    train(model, data, run, seed=5, epochs=30, progress=False, resume=True)
    assert files(run) == want


def test_a_failing_disk_mid_run_keeps_the_finished_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError while committing epoch 2 is E430; epoch 1 stays committed and the run resumes exactly."""
    model, data = _small()
    train(model, data, tmp_path / "straight", seed=5, progress=False)
    real_write = rundir.write_atomic
    calls = {"n": 0}

    def full_disk(path: Path, data_: bytes) -> None:
        if path.name == "trainer.json":
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        real_write(path, data_)
    monkeypatch.setattr(rundir, "write_atomic", full_disk)
    with pytest.raises(NitrogenError) as info:
        train(model, data, tmp_path / "run", seed=5, progress=False)
    assert info.value.diagnostics[0].code == "E430" and "No space left" in info.value.diagnostics[0].message
    monkeypatch.setattr(rundir, "write_atomic", real_write)
    assert state_epoch(tmp_path / "run") == 1
    train(model, data, tmp_path / "run", seed=5, progress=False, resume=True)
    assert files(tmp_path / "run") == files(tmp_path / "straight")


def test_interrupt_in_the_first_epoch_keeps_nothing_and_restores_a_replaced_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (a real SIGINT to this process) in epoch 1: a new run directory disappears; a run that
    --overwrite was replacing comes back byte for byte."""
    from nitrogen import native

    model, data = _small()
    real_step = native.Native.train_step
    steps = {"n": 0}

    def step_then_ctrl_c(self: Any, x: Any, labels: Any) -> Any:
        steps["n"] += 1
        if steps["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, x, labels)
    monkeypatch.setattr(native.Native, "train_step", step_then_ctrl_c)
    result = train(model, data, tmp_path / "new", seed=5, progress=False)
    assert result.interrupted and not result.records
    assert not (tmp_path / "new").exists()

    monkeypatch.setattr(native.Native, "train_step", real_step)
    old = tmp_path / "old"
    train(model, data, old, seed=5, epochs=2, progress=False)
    (old / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    steps["n"] = 0
    monkeypatch.setattr(native.Native, "train_step", step_then_ctrl_c)
    result = train(model, data, old, seed=6, progress=False, overwrite=True)
    assert result.interrupted and not result.records
    assert {p.name: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in old.iterdir()) == sorted(["best.ngck", "c", "curves.png", "last.ngck",
                                                            "metrics.csv", "metrics.json", "notes.txt", "spec.yaml",
                                                            "trainer.json"])


def test_overwrite_replaces_the_run_once_the_new_one_has_an_epoch(tmp_path: Path) -> None:
    model, data = _small()
    out = tmp_path / "run"
    train(model, data, out, seed=5, epochs=3, progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NitrogenError) as info:
        train(model, data, out, seed=6, epochs=1, progress=False)
    assert info.value.diagnostics[0].code == "E432"
    result = train(model, data, out, seed=6, epochs=1, progress=False, overwrite=True)
    assert len(result.records) == 1 and state_epoch(out) == 1
    assert (out / "notes.txt").read_text() == "mine"  # not a file of the run: never touched
    assert not [p for p in out.iterdir() if p.name.startswith(".replaced")]
    assert json.loads((out / "metrics.json").read_text())["seed"] == 6


# ---- the command line ------------------------------------------------------------------------------------

def test_a_bad_out_fails_before_any_work(tmp_path: Path) -> None:
    """--out that is a file, or below a file: E430 at once (the data set is never loaded), for train and compile."""
    taken = tmp_path / "taken"
    taken.write_text("a file")
    for out in (taken, taken / "sub"):
        proc = nitrogen_cli("train", "specs/mlp1_mnist.yaml", "--dataset", "mnist5k", "--out", str(out))
        assert proc.returncode == 1 and "error[E430]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert "loading" not in proc.stderr
        proc = nitrogen_cli("compile", "specs/tiny_mlp.yaml", "-o", str(out))
        assert proc.returncode == 1 and "error[E430]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert taken.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def _as_nobody(fn: Any) -> tuple[int, str]:
    """Run fn() in a forked child with the uid of `nobody` (the tests run as root in CI, where chmod does not
    stop root); return its exit code and what it printed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        os.dup2(w, 1)
        os.dup2(w, 2)
        code = 99
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
            code = 0
        except NitrogenError as exc:  # written to the pipe itself: pytest captures sys.stdout
            os.write(1, "\n".join(d.render() for d in exc.diagnostics).encode())
            code = 1
        except BaseException as exc:  # noqa: BLE001
            os.write(1, f"{exc.__class__.__name__}: {exc}".encode())
            code = 70
        finally:
            os._exit(code)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_an_unwritable_parent_is_e430_for_train_and_compile() -> None:
    """A parent directory with mode 555, as a user who is not root: the OS refuses the mkdir, and nitrogen says
    E430 (it was an internal error when the staging directory was made outside the E430 handling)."""
    from nitrogen import outdir

    base = Path(tempfile.mkdtemp())
    try:
        os.chmod(base, 0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        os.chmod(locked, 0o555)
        if os.geteuid() != 0:  # pragma: no cover - a developer's machine: chmod is enough
            with pytest.raises(NitrogenError) as info:
                rundir.RunDir.new(locked / "run", locked / "run", False)
            assert info.value.diagnostics[0].code == "E430"
            return

        def claim() -> None:
            rundir.RunDir.new(locked / "run", locked / "run", False)

        def stage() -> None:
            with outdir.staged_directory(locked / "fw"):
                pass
        for fn in (claim, stage):
            code, out = _as_nobody(fn)
            assert code == 1 and "error[E430]" in out and "Permission denied" in out, out
        assert list(locked.iterdir()) == []
    finally:
        os.chmod(base / "locked", 0o755)
        import shutil
        shutil.rmtree(base)


def test_existing_runs_are_never_merged_and_defaults_are_versioned(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(SCHEDULE_SPEC.replace("epochs: 40", "epochs: 1"))
    for _ in range(2):
        proc = nitrogen_cli("train", "tiny.yaml", "--dataset", "MNIST-5K", "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["sched_mlp-mnist5k-s42", "sched_mlp-mnist5k-s42-v2"]  # canonical data set name, versioned
    first = tmp_path / "runs" / runs[0]
    before = {p.name: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    # Another run, of the same or of another spec, into an existing run directory: refused, nothing touched.
    for spec in ("tiny.yaml", str(ROOT / "specs" / "mlp1_mnist.yaml")):
        proc = nitrogen_cli("train", spec, "--dataset", "mnist5k", "--out", str(first), cwd=tmp_path)
        assert proc.returncode == 1 and "error[E432]" in proc.stderr and "--resume" in proc.stderr, proc.stderr
        assert "loading" not in proc.stderr
    assert {p.name: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    # --overwrite with another spec: the old run's files are all gone, no mixture remains.
    proc = nitrogen_cli("train", str(ROOT / "specs" / "mlp1_mnist.yaml"), "--dataset", "mnist5k", "--epochs", "1",
                        "--out", str(first), "--overwrite", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (first / "c").iterdir()) == ["mlp1_mnist.c", "mlp1_mnist.h"]
    assert json.loads((first / "metrics.json").read_text())["spec"] == "mlp1_mnist"


def test_best_checkpoint_holds_the_headline_accuracy(straight: Path) -> None:
    summary = json.loads((straight / "metrics.json").read_text())
    best = summary["epochs"][summary["best_epoch"] - 1]
    last = summary["epochs"][-1]
    assert best["test_correct"] != last["test_correct"]
    spec = str(straight / "spec.yaml")
    for params, row in ((str(straight), best), (str(straight / "best.ngck"), best), (str(straight / "last.ngck"), last)):
        proc = nitrogen_cli("evaluate", spec, "--params", params, "--dataset", "mnist5k")
        assert proc.returncode == 0, proc.stderr
        assert f"{row['test_correct']}/{row['test_seen']} correct" in proc.stdout


def test_resume_refuses_what_would_not_continue_the_run(straight: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = nitrogen_cli("train", "--resume", str(run))
    assert proc.returncode == 1 and "error[E429]" in proc.stderr and "stopped early" in proc.stderr
    proc = nitrogen_cli("train", "--resume", str(run), "--seed", "7", "--epochs", "100")
    assert proc.returncode == 1 and "error[E433]" in proc.stderr and "seed" in proc.stderr
    proc = nitrogen_cli("train", "specs/mlp1_mnist.yaml", "--resume", str(run))
    assert proc.returncode == 1 and "error[E433]" in proc.stderr and "spec" in proc.stderr
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # a refusal changes nothing
    state = json.loads((run / "trainer.json").read_text())
    state["state"]["epoch"] = 3  # a hand-edited state: the CRC no longer matches
    (run / "trainer.json").write_text(json.dumps(state))
    proc = nitrogen_cli("train", "--resume", str(run))
    assert proc.returncode == 1 and "error[E426]" in proc.stderr
    shutil.copy(straight / "trainer.json", run / "trainer.json")
    shutil.copy(straight / "best.ngck", run / "last.ngck")  # a checkpoint the state does not name
    proc = nitrogen_cli("train", "--resume", str(run))
    assert proc.returncode == 1 and "error[E433]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_broken_or_missing_matplotlib_costs_only_the_plot(tmp_path: Path) -> None:
    for name, body, expect in (("missing", "raise ImportError(\"No module named 'matplotlib'\", name='matplotlib')\n",
                                "pip install 'nitrogen[plot]'"),
                               ("broken", "raise RuntimeError('a broken font cache')\n", "a broken font cache")):
        fake = tmp_path / name / "matplotlib"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(body)
        env = {**os.environ, "PYTHONPATH": str(tmp_path / name)}
        out = tmp_path / f"run-{name}"
        proc = nitrogen_cli("train", "specs/mlp1_mnist.yaml", "--dataset", "mnist5k", "--epochs", "1", "--out",
                            str(out), env=env)
        assert proc.returncode == 0, proc.stderr
        assert "warning: curves.png not drawn" in proc.stderr and expect in proc.stderr, proc.stderr
        assert not (out / "curves.png").exists() and state_epoch(out) == 1 and (out / "best.ngck").exists()


def test_a_reference_semantics_run_says_so_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = nitrogen_cli("train", "specs/mlp1_mnist.yaml", "--dataset", "mnist5k", "--epochs", "1",
                        "--semantics", "reference", "--no-plateau", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "reference semantics" in proc.stderr and "1000 test images (960 scored" in proc.stderr, proc.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["semantics"] == "reference" and summary["test_scored"] == 960 and summary["test_images"] == 1000
    assert summary["options"] == {"seed": 42, "max_epochs": 1, "plateau": False, "early_stopping": True,
                                  "backend": "c", "semantics_override": "reference"}
    assert (out / "spec.yaml").read_text().splitlines()[0].startswith(
        "# nitrogen train ran this spec with --semantics reference")
    # Resuming applies the override again: the run's own spec copy gives the same network.
    proc = nitrogen_cli("train", "--resume", str(out), "--epochs", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert state_epoch(out) == 2


def test_the_numpy_backend_is_not_called_reference() -> None:
    proc = nitrogen_cli("train", "specs/mlp1_mnist.yaml", "--dataset", "mnist5k", "--reference")
    assert proc.returncode == 2 and "--backend numpy" in proc.stderr and "--semantics reference" in proc.stderr


def test_c_and_numpy_backends_write_the_same_run(tmp_path: Path) -> None:
    model, data = _small()
    train(model, data, tmp_path / "c", seed=5, epochs=3, progress=False)
    train(model, data, tmp_path / "numpy", seed=5, epochs=3, progress=False, backend="numpy")
    for name in ("metrics.csv", "last.ngck", "best.ngck"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "numpy" / name).read_bytes(), name


def test_metrics_csv_is_written_while_the_run_goes(tmp_path: Path) -> None:
    (tmp_path / "sched.yaml").write_text(SCHEDULE_SPEC)
    proc = start("sched.yaml", "--dataset", "mnist5k", "--out", "run", "--no-early-stopping", cwd=tmp_path)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("epoch   2:"):
            rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
            assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:3]] == ["1", "2"]
            assert state_epoch(tmp_path / "run") >= 2
            break
    proc.kill()
    proc.communicate()


def test_curves_have_whole_epochs_and_say_what_the_spec_does() -> None:
    """curves.png: integer epoch ticks, a train-curve label that names augmentation and dropout only when the
    spec has them, and the spec's plateau factor (only when lr_inv changed)."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from nitrogen.plot import figure
    from nitrogen.train import EpochRecord

    from conftest import load

    records = [EpochRecord(e, 900 - e, 50 + e, 100, 60 + e, 100, 512 if e < 3 else 2048) for e in (1, 2, 3, 4, 5)]
    for spec, label in (("mlp1_mnist.yaml", "train (during the epoch)"),
                        ("mlp4_cifar10.yaml", "train (during the epoch, augmented, dropout on)")):
        model = load(spec)
        fig = figure(model, "data", records)
        acc_ax, loss_ax = fig.axes
        fig.canvas.draw()
        for ax in (acc_ax, loss_ax):
            ticks = [t for t in ax.get_xticks() if 1 <= t <= 5]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert acc_ax.get_legend_handles_labels()[1][0] == label
        assert loss_ax.get_title() == f"training loss (dotted: lr_inv x{model.train.plateau.factor})"
        plt.close(fig)
        fig = figure(model, "data", records[:2])  # no lr_inv change: no note in the title
        assert fig.axes[1].get_title() == "training loss"
        plt.close(fig)
