"""`nitrogen train` and `nitrogen evaluate`: the paper's training protocol (semantics 3 and 7) around the
generated C.

Per epoch e = 1 .. max_epochs (semantics 7.4): pi_e = the model's shuffle (drawn from the context's PRNG),
floor(N_train / bs) training steps, evaluation on the test set (`reference`: the first floor(N/bs)*bs
samples; `nitrogen`: all), the best-epoch record (strictly more correct), early stopping, then the
plateau rule (lr_inv x factor from the next epoch). Both rules compare counts of correct predictions
in integers: "improved" means 100*(c - best) >= min_delta_pct * N_eval.

The arithmetic of training runs in the generated C (`native.Native`, through ctypes) or, with
`--reference`, in the NumPy reference; both see the same normalised data (`preprocess.py`) and draw
every random number from the model's own PRNG, so a short C run and a reference run give the same
numbers. Outputs are staged in a temporary directory and moved into place at the end.

Checkpoints: after every epoch the driver sets the model's `epoch` counter and keeps the checkpoint bytes
(`<name>_checkpoint_save()` for the C, `checkpoint.encode` for the reference); the last one is written as
`checkpoint.ngck` next to `params.npz`, so it always holds the state at the end of the last finished epoch
(an interrupted run's `params.npz` holds the parameters when it stopped). `--resume` loads such a file and
continues with epoch `epoch + 1`; the plateau and early-stopping counters and the best-epoch record start afresh.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import numpy as np

from . import __version__, checkpoint, reference
from .errors import Diagnostic, NitrogenError
from .layout import CheckpointFormat, checkpoint_format
from .outdir import staged_directory
from .pipeline import Compiled, compile_model
from .preprocess import Stats, normalize, statistics
from .spec import Model, Semantics

if TYPE_CHECKING:
    from .data import Dataset

CHECKPOINT = "params.npz"


class Backend(Protocol):
    """What the driver needs from a model: `native.Native` and `_Reference` provide it."""

    lr_inv: int
    epoch: int

    def shuffle(self, n: int) -> np.ndarray: ...
    def train_step(self, x: np.ndarray, labels: np.ndarray) -> tuple[int, int]: ...
    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> int: ...
    @property
    def params(self) -> dict[str, np.ndarray]: ...
    def set_params(self, params: dict[str, np.ndarray]) -> None: ...
    def checkpoint_save(self) -> bytes: ...
    def checkpoint_load(self, data: bytes, source: str = ...) -> None: ...


class _Reference:
    """reference.Model behind the Backend interface."""

    def __init__(self, model: Model, seed: int, fmt: CheckpointFormat | None = None) -> None:
        self.model = reference.Model(model, seed=seed)
        self.fmt = fmt or checkpoint.format_of(model)
        self.epoch = 0

    @property
    def lr_inv(self) -> int:
        return self.model.lr_inv

    @lr_inv.setter
    def lr_inv(self, value: int) -> None:
        self.model.lr_inv = value

    def shuffle(self, n: int) -> np.ndarray:
        return np.asarray(self.model.permutation(n), dtype=np.int64)

    def train_step(self, x: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
        stats = self.model.train_step(x, labels)
        return stats.loss, stats.correct

    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> int:
        return self.model.evaluate(x, labels)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.model.params

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        self.model.set_params(params)

    def checkpoint_save(self) -> bytes:
        m = self.model
        return checkpoint.encode(self.fmt, m.params, checkpoint.State(m.rng.state, m.rng.inc, m.lr_inv, m.steps,
                                                                     self.epoch))

    def checkpoint_load(self, data: bytes, source: str = "checkpoint") -> None:
        ck = checkpoint.decode(self.fmt, data, source)
        checkpoint.restore(self.model, ck)
        self.epoch = ck.state.epoch


@dataclass
class Rule:
    """Semantics 7.2 / 7.3: count epochs without a gain of min_delta_pct points, from `from_epoch` on."""

    patience: int
    from_epoch: int
    min_delta_pct: int
    enabled: bool = True
    best: int | None = None
    counter: int = 0

    def fires(self, epoch: int, correct: int, n_eval: int) -> bool:
        """Feed one epoch's correct count; True when the counter reaches `patience` (then it restarts)."""
        if not self.enabled or epoch < self.from_epoch:
            return False
        if self.best is None or 100 * (correct - self.best) >= self.min_delta_pct * n_eval:
            self.best, self.counter = correct, 0
            return False
        self.counter += 1
        if self.counter >= self.patience:
            self.counter = 0
            return True
        return False


@dataclass
class EpochRecord:
    epoch: int
    train_loss: int        # sum over the epoch of the global loss (integer)
    train_correct: int     # pre-update predictions, augmentation and dropout on (semantics 7.4)
    train_seen: int
    test_correct: int
    test_seen: int
    lr_inv: int            # the learning-rate inverse this epoch trained with
    seconds: float         # wall time of the epoch (training and evaluation)

    @property
    def train_acc(self) -> float:
        return 100.0 * self.train_correct / max(1, self.train_seen)

    @property
    def test_acc(self) -> float:
        return 100.0 * self.test_correct / max(1, self.test_seen)


@dataclass
class TrainResult:
    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_test_correct: int = -1
    best_train_acc: float = 0.0
    stopped_early: bool = False
    interrupted: bool = False
    checkpoint: bytes = b""   # the model's checkpoint at the end of the last finished epoch

    @property
    def best_test_acc(self) -> float:
        seen = next((r.test_seen for r in self.records if r.epoch == self.best_epoch), 1)
        return 100.0 * max(self.best_test_correct, 0) / seen


def prepare(dataset: Dataset, model: Model, seed: int) -> tuple[Stats, np.ndarray, np.ndarray]:
    """Statistics from the training set and both sets normalised (semantics 3)."""
    if dataset.shape != tuple(model.input_shape):
        raise NitrogenError([Diagnostic(
            "E411", f"data set '{dataset.name}' has images of shape {dataset.shape}, the spec expects "
            f"{tuple(model.input_shape)}", hint="use a spec whose `input` matches the data set")])
    if dataset.classes > model.num_classes:
        raise NitrogenError([Diagnostic(
            "E411", f"data set '{dataset.name}' has {dataset.classes} classes, the spec {model.num_classes}",
            hint="set num_classes to the data set's class count")])
    if len(dataset.train_x) < model.train.batch_size:
        raise NitrogenError([Diagnostic(
            "E411", f"the training set has {len(dataset.train_x)} samples, fewer than one batch of "
            f"{model.train.batch_size}", hint="lower train.batch_size")])
    stats = statistics(dataset.train_x, seed, model.train.stats_samples)
    return stats, normalize(dataset.train_x, stats), normalize(dataset.test_x, stats)


def make_backend(model: Model, compiled: Compiled, seed: int, use_reference: bool) -> Backend:
    if use_reference:
        return _Reference(model, seed, checkpoint_format(compiled.program, compiled.report))
    from .native import Native
    return Native(compiled, seed)


class Progress:
    """A progress bar per epoch on a terminal (tqdm); one line per epoch otherwise."""

    def __init__(self, enabled: bool, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.enabled = enabled
        self.bar: Any = None

    def start(self, epoch: int, epochs: int, total: int) -> None:
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", file=self.stream,
                            leave=False, dynamic_ncols=True)

    def step(self, loss: int, correct: int, seen: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {loss // max(1, seen)}, train acc {100.0 * correct / seen:.2f}%",
                                     refresh=False)

    def end(self, record: EpochRecord, best: float, note: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            print(f"epoch {record.epoch:3d}: loss/sample {record.train_loss // max(1, record.train_seen):6d}  "
                  f"train {record.train_acc:6.2f}%  test {record.test_acc:6.2f}%  best {best:6.2f}%  "
                  f"lr_inv {record.lr_inv}  {record.seconds:6.1f} s{note}", file=self.stream, flush=True)


def run(model: Model, dataset: Dataset, train_x: np.ndarray, test_x: np.ndarray, backend: Backend, *,
        epochs: int, lr_inv_max: int, progress: Progress, plateau_on: bool = True,
        early_stopping_on: bool = True, first_epoch: int = 1) -> TrainResult:
    """The epoch loop of semantics 7.4 on normalised int8 data, epochs first_epoch .. epochs."""
    t = model.train
    bs = t.batch_size
    n_batches = len(train_x) // bs
    n_eval = reference.eval_sample_count(len(test_x), bs, Semantics(model.semantics))
    plateau = Rule(t.plateau.patience, t.plateau.from_epoch, t.plateau.min_delta_pct,
                   plateau_on and t.plateau.factor > 1)
    early = Rule(t.early_stopping.patience, t.early_stopping.from_epoch, t.early_stopping.min_delta_pct,
                 early_stopping_on)
    result = TrainResult()
    train_y, test_y = dataset.train_y, dataset.test_y
    try:
        for epoch in range(first_epoch, epochs + 1):
            start = time.monotonic()
            order = backend.shuffle(len(train_x))
            loss = correct = 0
            progress.start(epoch, epochs, n_batches)
            for k in range(n_batches):
                idx = order[k * bs:(k + 1) * bs]
                step_loss, step_correct = backend.train_step(train_x[idx], train_y[idx])
                loss += step_loss
                correct += step_correct
                progress.step(loss, correct, (k + 1) * bs)
            test_correct = backend.evaluate(test_x[:n_eval], test_y[:n_eval])
            record = EpochRecord(epoch, loss, correct, n_batches * bs, test_correct, n_eval, backend.lr_inv,
                                 time.monotonic() - start)
            result.records.append(record)
            note = ""
            if test_correct > result.best_test_correct:
                result.best_test_correct, result.best_epoch = test_correct, epoch
                result.best_train_acc = record.train_acc
            stop = early.fires(epoch, test_correct, n_eval)
            if not stop and plateau.fires(epoch, test_correct, n_eval):
                new = backend.lr_inv * t.plateau.factor
                if new <= lr_inv_max:  # semantics 7.2: a reduction that makes any A exceed 2^62 is skipped
                    backend.lr_inv = new
                    note = f"  (plateau: lr_inv -> {new})"
            backend.epoch = epoch
            result.checkpoint = backend.checkpoint_save()
            progress.end(record, result.best_test_acc, note + ("  (early stop)" if stop else ""))
            if stop:
                result.stopped_early = True
                break
    except KeyboardInterrupt:
        result.interrupted = True  # keep the epochs that finished; the caller writes them out
    return result


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch scheduler, `kill`) stops training like Ctrl-C: the finished epochs are written."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def save_checkpoint(path: Path, params: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    arrays: dict[str, Any] = {f"param/{k}": np.asarray(v, dtype=np.int32) for k, v in params.items()}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def load_checkpoint(path: Path, model: Model) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parameters and metadata of a `params.npz`; checks that it belongs to this spec."""
    def bad(message: str) -> NitrogenError:
        return NitrogenError([Diagnostic("E420", f"{path}: {message}",
                                         hint="pass the params.npz that `nitrogen train` wrote for this spec")])
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(bytes(f["meta"]).decode())
            params = {k.removeprefix("param/"): f[k].astype(np.int64) for k in f.files if k.startswith("param/")}
    except FileNotFoundError:
        raise bad("no such file") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise bad(f"not a nitrogen checkpoint ({exc.__class__.__name__}: {exc})") from None
    if meta.get("spec_sha256") != model.sha256:
        raise bad(f"written for a different spec (hash {str(meta.get('spec_sha256'))[:12]}, this spec "
                  f"{model.sha256[:12]})")
    return params, meta


def write_outputs(stage: Path, model: Model, dataset: Dataset, compiled: Compiled, stats: Stats,
                  result: TrainResult, backend: Backend, seed: int, backend_name: str, spec_text: str) -> None:
    rows = [{"epoch": r.epoch, "train_loss": r.train_loss, "train_acc": round(r.train_acc, 4),
             "test_acc": round(r.test_acc, 4), "train_correct": r.train_correct, "train_seen": r.train_seen,
             "test_correct": r.test_correct, "test_seen": r.test_seen, "lr_inv": r.lr_inv,
             "seconds": round(r.seconds, 3)} for r in result.records]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (stage / "metrics.csv").write_text(buf.getvalue())
    summary = {
        "spec": model.name, "spec_sha256": model.sha256, "semantics": str(model.semantics), "dataset": dataset.name,
        "data_source": dataset.source, "seed": seed, "backend": backend_name, "nitrogen": __version__,
        "epochs_run": len(result.records), "best_epoch": result.best_epoch,
        "best_test_acc": round(result.best_test_acc, 4), "best_train_acc": round(result.best_train_acc, 4),
        "final_test_acc": round(result.records[-1].test_acc, 4) if result.records else None,
        "stopped_early": result.stopped_early, "interrupted": result.interrupted,
        "seconds": round(sum(r.seconds for r in result.records), 3), "normalisation": stats.as_dict(),
        "epochs": rows,
    }
    (stage / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    meta = {"spec_sha256": model.sha256, "spec": model.name, "epochs_run": len(result.records),
            "lr_inv": backend.lr_inv, "normalisation": stats.as_dict(), "format": 1}
    save_checkpoint(stage / CHECKPOINT, backend.params, meta)
    if result.checkpoint:
        (stage / checkpoint.FILE_NAME).write_bytes(result.checkpoint)
    (stage / "spec.yaml" if not model.source.endswith(".ng") else stage / "spec.ng").write_text(spec_text)
    c_dir = stage / "c"
    c_dir.mkdir()
    for name, text in compiled.files.items():  # the C that trained, with <name>_normalize() for these data
        (c_dir / name).write_text(text)
    if result.records:
        from .plot import learning_curves
        learning_curves(stage / "curves.png", model.name, dataset.name, result.records)


def train(model: Model, dataset: Dataset, out_dir: Path, *, seed: int, epochs: int | None = None,
          use_reference: bool = False, progress: bool = True, plateau: bool = True,
          early_stopping: bool = True, resume: Path | None = None) -> TrainResult:
    """Everything `nitrogen train` does; returns the per-epoch records. `resume`: a checkpoint.ngck to continue
    from (its parameters, PRNG, lr_inv and counters), with the epoch after the one it finished."""
    spec_text = Path(model.source).read_text(encoding="utf-8") if os.path.exists(model.source) else ""
    stats, train_x, test_x = prepare(dataset, model, seed)
    compiled = compile_model(model, stats)
    backend = make_backend(model, compiled, seed, use_reference)
    max_epochs = epochs or model.train.epochs
    first_epoch = 1
    if resume is not None:
        backend.checkpoint_load(checkpoint.read_bytes(resume), str(resume))
        first_epoch = backend.epoch + 1
        recorded = normalisation_near(resume)
        if recorded is not None and (recorded.mean, recorded.mad) != (stats.mean, stats.mad):
            raise NitrogenError([Diagnostic(
                "E428", f"{resume}: its run normalised the data with {recorded.as_dict()}, this run with "
                f"{stats.as_dict()}", hint="resume with the run's seed and data set")])
        if first_epoch > max_epochs:
            raise NitrogenError([Diagnostic(
                "E429", f"{resume}: the checkpoint has finished epoch {backend.epoch}, and the limit is "
                f"{max_epochs} epochs: nothing to resume", hint="raise --epochs")])
    report = Progress(progress)
    if progress:
        print(f"{model.name} on {dataset.name}: {len(train_x)} training and {len(test_x)} test images "
              f"({dataset.source}); {'NumPy reference' if use_reference else 'generated C'}, seed {seed}",
              file=sys.stderr, flush=True)
    with staged_directory(out_dir) as stage, _terminate_as_interrupt():
        result = run(model, dataset, train_x, test_x, backend, epochs=max_epochs,
                     lr_inv_max=compiled.program.constant("LR_INV_MAX"), progress=report, plateau_on=plateau,
                     early_stopping_on=early_stopping, first_epoch=first_epoch)
        write_outputs(stage, model, dataset, compiled, stats, result, backend, seed,
                      "reference" if use_reference else "c", spec_text)
    return result


def _stats_from(norm: Any) -> Stats | None:
    try:
        return Stats(tuple(norm["mean"]), tuple(norm["mad"]), int(norm["samples"]), int(norm["seed"]))
    except (KeyError, TypeError, ValueError):
        return None


def normalisation_near(path: Path) -> Stats | None:
    """The normalisation record of the run directory that holds `path` (its metrics.json), if there is one."""
    try:
        summary = json.loads((path.parent / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return _stats_from(summary.get("normalisation")) if isinstance(summary, dict) else None


@dataclass(frozen=True)
class Trained:
    """What `evaluate` loads: a checkpoint's bytes (validated) or a params.npz's arrays, with the normalisation
    its run used."""

    stats: Stats
    source: str
    params: dict[str, np.ndarray] | None = None
    checkpoint: bytes = b""


def read_trained(model: Model, path: Path) -> Trained:
    """A checkpoint.ngck (by suffix or magic; normalisation from its run's metrics.json) or a params.npz
    (normalisation inside), validated against the spec before any data set is loaded."""
    if checkpoint.is_checkpoint(path):
        data = checkpoint.read_bytes(path)
        checkpoint.decode(checkpoint.format_of(model), data, str(path), owner=checkpoint.run_spec_name(path))
        stats = normalisation_near(path)
        if stats is None:
            raise NitrogenError([Diagnostic(
                "E428", f"{path}: no normalisation record for this checkpoint (evaluate reads it from the "
                "metrics.json that `nitrogen train` writes next to it)",
                hint="evaluate the checkpoint inside its run directory, or pass that run's params.npz")])
        return Trained(stats, str(path), checkpoint=data)
    params, meta = load_checkpoint(path, model)
    stats = _stats_from(meta.get("normalisation", {}))
    if stats is None:
        raise NitrogenError([Diagnostic("E420", f"{path}: the checkpoint has no normalisation record",
                                        hint="re-run `nitrogen train`")])
    return Trained(stats, str(path), params=params)


def evaluate(model: Model, dataset: Dataset, params: Path | Trained, *,
             use_reference: bool = False) -> tuple[int, int]:
    """(correct, evaluated) of a checkpoint.ngck or params.npz on the test set, with the normalisation it was
    trained with. A checkpoint goes through `<name>_checkpoint_load()` (or the Python reader for the reference)."""
    trained = params if isinstance(params, Trained) else read_trained(model, params)
    test_x = normalize(dataset.test_x, trained.stats)
    compiled = compile_model(model, trained.stats)
    backend = make_backend(model, compiled, trained.stats.seed, use_reference)
    if trained.checkpoint:
        backend.checkpoint_load(trained.checkpoint, trained.source)
    else:
        assert trained.params is not None
        try:
            backend.set_params(trained.params)
        except ValueError as exc:
            raise NitrogenError([Diagnostic("E420", f"{trained.source}: {exc}")]) from None
    n_eval = reference.eval_sample_count(len(test_x), model.train.batch_size, Semantics(model.semantics))
    return backend.evaluate(test_x[:n_eval], dataset.test_y[:n_eval]), n_eval


__all__ = ["train", "evaluate", "read_trained", "Trained", "normalisation_near", "run", "Rule", "EpochRecord",
           "TrainResult", "staged_directory", "save_checkpoint", "load_checkpoint"]
