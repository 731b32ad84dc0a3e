"""`nitrogen train` and `nitrogen evaluate`: the paper's training protocol around the generated C.

Per epoch e = 1 .. max_epochs: the model's shuffle (drawn from the context's PRNG), floor(N_train / bs)
training steps, evaluation on the test set (`reference` semantics: the first floor(N/bs)*bs samples;
`nitrogen`: all), the best-epoch record (strictly more correct), early stopping, then the plateau rule
(lr_inv x factor from the next epoch). Both rules compare counts of correct predictions in integers:
"improved" means 100*(c - best) >= min_delta_pct * N_eval. docs/semantics.md describes the protocol.

The arithmetic of training runs in the generated C (`native.Native`, through ctypes) or, with
`--backend numpy`, in the NumPy reference; both see the same normalised data (`preprocess.py`) and draw
every random number from the model's own PRNG, so the two give the same numbers.

Everything a run writes goes into its run directory as it happens (`rundir.py`): after every epoch the
checkpoints of the last and of the best epoch and the trainer state (the plateau and early-stopping
counters, the best epoch and the history) are committed together, so a crash loses at most the epoch in
progress, and `--resume` continues exactly where the last finished epoch left off: a run stopped at any
epoch and resumed gives the same metrics and checkpoints, byte for byte, as one that was never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import numpy as np

from . import __version__, checkpoint, reference
from .errors import Diagnostic, NitrogenError
from .layout import CheckpointFormat, checkpoint_format
from .pipeline import Compiled, compile_model
from .preprocess import Stats, normalize, statistics
from .rundir import BEST, CURVES, LAST, METRICS_JSON, TRAINER_FILE, RunDir, sha256
from .spec import Model, Semantics

if TYPE_CHECKING:
    from .data import Dataset

BACKENDS = ("c", "numpy")


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
    """The plateau rule and early stopping: count epochs without a gain of min_delta_pct points, from
    `from_epoch` on. `best` and `counter` are trainer state (saved with every epoch, restored on resume)."""

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

    def state(self) -> dict[str, int | None]:
        return {"best": self.best, "counter": self.counter}

    def restore(self, state: dict[str, Any]) -> None:
        self.best, self.counter = state["best"], int(state["counter"])


@dataclass
class EpochRecord:
    epoch: int
    train_loss: int        # sum over the epoch of the global loss (integer)
    train_correct: int     # pre-update predictions, augmentation and dropout on
    train_seen: int
    test_correct: int
    test_seen: int
    lr_inv: int            # the learning-rate inverse this epoch trained with
    seconds: float | None = None  # wall time (training and evaluation); not part of the trainer state

    @property
    def train_acc(self) -> float:
        return 100.0 * self.train_correct / max(1, self.train_seen)

    @property
    def test_acc(self) -> float:
        return 100.0 * self.test_correct / max(1, self.test_seen)

    def history(self) -> dict[str, int]:
        """The integers the trainer state keeps (and metrics.csv shows) for this epoch."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "train_correct": self.train_correct,
                "train_seen": self.train_seen, "test_correct": self.test_correct, "test_seen": self.test_seen,
                "lr_inv": self.lr_inv}


@dataclass
class TrainResult:
    records: list[EpochRecord] = field(default_factory=list)  # every epoch of the run, resumed ones included
    best_epoch: int = 0
    best_test_correct: int = -1
    best_train_correct: int = 0
    best_train_seen: int = 0
    stopped_early: bool = False
    interrupted: bool = False
    first_epoch: int = 1        # the first epoch this session trained
    run_dir: Path | None = None

    @property
    def best_test_acc(self) -> float:
        seen = next((r.test_seen for r in self.records if r.epoch == self.best_epoch), 1)
        return 100.0 * max(self.best_test_correct, 0) / seen

    @property
    def best_train_acc(self) -> float:
        return 100.0 * self.best_train_correct / max(1, self.best_train_seen)


@dataclass(frozen=True)
class Options:
    """How a run trains, besides the spec: recorded in the trainer state and checked on resume."""

    seed: int
    max_epochs: int
    plateau: bool = True
    early_stopping: bool = True
    backend: str = "c"
    semantics_override: str | None = None  # --semantics, which the run's spec copy does not say
    dataset_arg: str | None = None         # --dataset as the run can find it again (a file: its absolute path)
    data_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "max_epochs": self.max_epochs, "plateau": self.plateau,
                "early_stopping": self.early_stopping, "backend": self.backend,
                "semantics_override": self.semantics_override}


def prepare(dataset: Dataset, model: Model, seed: int) -> tuple[Stats, np.ndarray, np.ndarray]:
    """Statistics from the training set and both sets normalised to int8, after checking (and, for feature
    vectors, reshaping) the data set against the spec (E411, `data.fit_to_model`)."""
    from .data import fit_to_model

    dataset = fit_to_model(dataset, model)
    stats = statistics(dataset.train_x, seed, model.train.stats_samples)
    return stats, normalize(dataset.train_x, stats), normalize(dataset.test_x, stats)


def make_backend(model: Model, compiled: Compiled, seed: int, backend: str) -> Backend:
    if backend == "numpy":
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

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end(self, record: EpochRecord, best: float, note: str) -> None:
        self.close()
        self.say(f"epoch {record.epoch:3d}: loss/sample {record.train_loss // max(1, record.train_seen):6d}  "
                 f"train {record.train_acc:6.2f}%  test {record.test_acc:6.2f}%  best {best:6.2f}%  "
                 f"lr_inv {record.lr_inv}  {record.seconds or 0.0:6.1f} s{note}")


class _Stop:
    """SIGINT (Ctrl-C) and SIGTERM (`kill`, a batch scheduler) ask the run to stop after the current step;
    the epoch in progress is dropped and the finished ones stay committed. A second signal stops at once,
    which is safe too: the run directory is consistent at every instant."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self, say: Any) -> Iterator[_Stop]:
        def handler(signum: int, frame: object) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            say(f"\n{signal.Signals(signum).name}: stopping after this step (again to stop at once)")
        try:
            previous = [(s, signal.signal(s, handler)) for s in (signal.SIGINT, signal.SIGTERM)]
        except ValueError:  # not the main thread: leave signals alone
            yield self
            return
        try:
            yield self
        finally:
            for s, h in previous:
                signal.signal(s, h)


class _Interrupted(Exception):
    pass


class Trainer:
    """The epoch loop with its state: rules, best epoch and history, saved after every epoch."""

    def __init__(self, model: Model, dataset: Dataset, compiled: Compiled, stats: Stats, backend: Backend,
                 options: Options, run: RunDir, progress: Progress) -> None:
        t = model.train
        self.model, self.dataset, self.compiled, self.stats = model, dataset, compiled, stats
        self.backend, self.options, self.run, self.progress = backend, options, run, progress
        self.plateau = Rule(t.plateau.patience, t.plateau.from_epoch, t.plateau.min_delta_pct,
                            options.plateau and t.plateau.factor > 1)
        self.early = Rule(t.early_stopping.patience, t.early_stopping.from_epoch, t.early_stopping.min_delta_pct,
                          options.early_stopping)
        self.result = TrainResult(run_dir=run.path)
        self.last_sha = self.best_sha = ""
        self.committed = 0  # epochs this session has committed to the run directory
        self.restored = False
        self.sessions: list[dict[str, Any]] = []
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    # -- trainer state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything besides the checkpoint that an exact resume needs, as plain JSON data."""
        r, ds = self.result, self.dataset
        return {
            "spec": self.model.name, "spec_sha256": self.model.sha256, "semantics": str(self.model.semantics),
            "checkpoint_spec_hash": f"{checkpoint_format(self.compiled.program, self.compiled.report).spec_hash:016x}",
            "options": self.options.as_dict(),
            "dataset": {"name": ds.name, "arg": self.options.dataset_arg or ds.name,
                        "data_dir": self.options.data_dir, "files": data_files(ds)},
            "normalisation": self.stats.as_dict(),
            "epoch": r.records[-1].epoch if r.records else 0,
            "stopped_early": r.stopped_early,
            "best": {"epoch": r.best_epoch, "test_correct": r.best_test_correct,
                     "train_correct": r.best_train_correct, "train_seen": r.best_train_seen},
            "plateau": self.plateau.state(), "early_stopping": self.early.state(),
            "files": {LAST: self.last_sha, BEST: self.best_sha},
            "history": [rec.history() for rec in r.records],
        }

    def restore(self, state: dict[str, Any], seconds: dict[int, float]) -> None:
        """Continue from a committed trainer state (its checkpoint is loaded separately)."""
        r = self.result
        r.records = [EpochRecord(**h, seconds=seconds.get(h["epoch"])) for h in state["history"]]
        best = state["best"]
        r.best_epoch, r.best_test_correct = best["epoch"], best["test_correct"]
        r.best_train_correct, r.best_train_seen = best["train_correct"], best["train_seen"]
        r.stopped_early = state["stopped_early"]
        self.plateau.restore(state["plateau"])
        self.early.restore(state["early_stopping"])
        self.last_sha, self.best_sha = state["files"][LAST], state["files"][BEST]
        self.restored = True

    # -- the loop -----------------------------------------------------------------------------------
    def fit(self, train_x: np.ndarray, test_x: np.ndarray, stop: _Stop) -> TrainResult:
        model, backend, r = self.model, self.backend, self.result
        bs, factor = model.train.batch_size, model.train.plateau.factor
        n_batches = len(train_x) // bs
        n_eval = reference.eval_sample_count(len(test_x), bs, Semantics(model.semantics))
        lr_inv_max = self.compiled.program.constant("LR_INV_MAX")
        train_y, test_y = self.dataset.train_y, self.dataset.test_y
        first = r.records[-1].epoch + 1 if r.records else 1
        r.first_epoch = first
        try:
            for epoch in range(first, self.options.max_epochs + 1):
                start = time.monotonic()
                order = backend.shuffle(len(train_x))
                loss = correct = 0
                self.progress.start(epoch, self.options.max_epochs, n_batches)
                for k in range(n_batches):
                    idx = order[k * bs:(k + 1) * bs]
                    step_loss, step_correct = backend.train_step(train_x[idx], train_y[idx])
                    loss += step_loss
                    correct += step_correct
                    self.progress.step(loss, correct, (k + 1) * bs)
                    if stop.requested:
                        raise _Interrupted
                test_correct = backend.evaluate(test_x[:n_eval], test_y[:n_eval])
                record = EpochRecord(epoch, loss, correct, n_batches * bs, test_correct, n_eval, backend.lr_inv)
                r.records.append(record)
                improved = test_correct > r.best_test_correct
                if improved:
                    r.best_epoch, r.best_test_correct = epoch, test_correct
                    r.best_train_correct, r.best_train_seen = record.train_correct, record.train_seen
                note = ""
                stop_now = self.early.fires(epoch, test_correct, n_eval)
                if not stop_now and self.plateau.fires(epoch, test_correct, n_eval):
                    new = backend.lr_inv * factor
                    if new <= lr_inv_max:  # a reduction that makes any lr_inv x amp exceed 2^62 is skipped
                        backend.lr_inv = new
                        note = f"  (plateau: lr_inv -> {new})"
                r.stopped_early = stop_now
                backend.epoch = epoch
                last = backend.checkpoint_save()
                self.last_sha = sha256(last)
                if improved:
                    self.best_sha = self.last_sha
                self.run.commit(self.state(), last, last if improved else None)
                self.committed += 1
                record.seconds = time.monotonic() - start
                self.write_summary("running")
                self.progress.end(record, r.best_test_acc, note + ("  (early stop)" if stop_now else ""))
                if stop_now:
                    break
                if stop.requested:
                    raise _Interrupted
        except (_Interrupted, KeyboardInterrupt):
            r.interrupted = True
            self.progress.close()
        return r

    # -- metrics.json -------------------------------------------------------------------------------
    def write_summary(self, status: str) -> None:
        r, ds, model = self.result, self.dataset, self.model
        rows = []
        for rec in r.records:
            row: dict[str, Any] = rec.history()
            row.update(train_acc=round(rec.train_acc, 4), test_acc=round(rec.test_acc, 4),
                       seconds=None if rec.seconds is None else round(rec.seconds, 3))
            rows.append(row)
        session = {"started": self.started, "first_epoch": r.first_epoch,
                   "last_epoch": r.records[-1].epoch if r.records else r.first_epoch - 1, "ended": status}
        summary = {
            "spec": model.name, "spec_sha256": model.sha256, "semantics": str(model.semantics),
            "dataset": ds.name, "data_source": ds.source, "data_files": data_files(ds),
            "seed": self.options.seed, "backend": self.options.backend, "nitrogen": __version__,
            "options": self.options.as_dict(), "command": command_line(),
            "status": status, "epochs_run": len(r.records), "best_epoch": r.best_epoch,
            "best_test_acc": round(r.best_test_acc, 4), "best_train_acc": round(r.best_train_acc, 4),
            "final_test_acc": round(r.records[-1].test_acc, 4) if r.records else None,
            "stopped_early": r.stopped_early, "interrupted": status == "interrupted",
            "test_images": len(ds.test_y), "test_scored": r.records[-1].test_seen if r.records else None,
            "seconds": round(sum(rec.seconds or 0.0 for rec in r.records), 3),
            "normalisation": self.stats.as_dict(), "files": {"last": LAST, "best": BEST, "trainer": TRAINER_FILE},
            "sessions": [*self.sessions, session], "epochs": rows,
        }
        self.run.write(METRICS_JSON, json.dumps(summary, indent=2) + "\n")


def data_files(dataset: Dataset) -> list[dict[str, str]]:
    """The files a data set was read from, with their SHA-256 (when the loader recorded them)."""
    files = getattr(dataset, "files", None) or ()
    return [{"path": str(p), "sha256": h} for p, h in files]


def command_line() -> str:
    import shlex
    return "nitrogen " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name in ("nitrogen", "__main__.py") else ""


def spec_copy(model: Model, text: str, options: Options) -> tuple[str, str]:
    """(file name, text) of the spec copy in the run directory: the file as given, with a first comment
    line when `--semantics` changed its mode (the run's trainer state records the override)."""
    name = "spec.ng" if model.source.endswith(".ng") else "spec.yaml"
    if options.semantics_override:
        note = (f"# nitrogen train ran this spec with --semantics {options.semantics_override} "
                f"(this run's {TRAINER_FILE} records it; `--resume` applies it again)\n")
        text = note + text
    return name, text


def start_run(run: RunDir, model: Model, compiled: Compiled, spec_text: str, options: Options) -> None:
    """The files a new run writes before its first epoch: the spec, the generated C and the CSV header."""
    name, text = spec_copy(model, spec_text, options)
    run.write(name, text)
    for file, content in compiled.files.items():  # the C that trains, with <name>_normalize() for these data
        run.write(f"c/{file}", content)
    run.start_csv([])


def check_resumable(state: dict[str, Any], model: Model, dataset: Dataset, stats: Stats, options: Options,
                    run: RunDir) -> None:
    """E433/E428/E429 when the resumed run would not continue the run in `run` exactly."""
    where = str(run.path)

    def differ(what: str, theirs: object, ours: object, hint: str) -> NitrogenError:
        return NitrogenError([Diagnostic("E433", f"--resume {where}: the run used {what} {theirs}, this command "
                                                 f"{ours}", notes=("a resumed run continues the run exactly as it "
                                                                   "was started",), hint=hint)])
    if state["spec_sha256"] != model.sha256:
        raise differ("a spec with hash", state["spec_sha256"][:12], f"{model.sha256[:12]} ({model.source})",
                     f"leave SPEC out to use the run's own copy ({where}/spec.*)")
    recorded = state["options"]
    for key in ("seed", "plateau", "early_stopping", "backend"):
        if recorded[key] != getattr(options, key):
            flag = {"seed": "--seed", "plateau": "--no-plateau", "early_stopping": "--no-early-stopping",
                    "backend": "--backend"}[key]
            raise differ(f"{key}", recorded[key], getattr(options, key), f"leave {flag} out when resuming")
    if state["dataset"]["name"] != dataset.name:
        raise differ("the data set", state["dataset"]["name"], dataset.name, "leave --dataset out when resuming")
    theirs = {f["sha256"] for f in state["dataset"]["files"]}
    ours = {f["sha256"] for f in data_files(dataset)}
    if theirs and ours and theirs != ours:
        raise differ("data files with checksums", sorted(h[:12] for h in theirs), sorted(h[:12] for h in ours),
                     "resume with the same data files")
    if state["normalisation"] != stats.as_dict():
        raise NitrogenError([Diagnostic(
            "E428", f"--resume {where}: its run normalised the data with {state['normalisation']}, this run with "
            f"{stats.as_dict()}", hint="resume with the run's seed and data set")])
    if state["stopped_early"]:
        raise NitrogenError([Diagnostic("E429", f"--resume {where}: the run stopped early after epoch "
                                        f"{state['epoch']}: nothing to resume",
                                        hint="start a new run (early stopping can be switched off with "
                                             "--no-early-stopping)")])
    if state["epoch"] >= options.max_epochs:
        raise NitrogenError([Diagnostic("E429", f"--resume {where}: the run has finished epoch {state['epoch']}, "
                                        f"and the limit is {options.max_epochs} epochs: nothing to resume",
                                        hint="raise --epochs")])


def _previous_summary(run: RunDir) -> tuple[dict[int, float], list[dict[str, Any]]]:
    """Epoch wall times and sessions of the run's metrics.json (informative only; absent is fine)."""
    try:
        old = json.loads(run.read(METRICS_JSON))
        seconds = {int(e["epoch"]): float(e["seconds"]) for e in old.get("epochs", []) if e.get("seconds") is not None}
        sessions = [s for s in old.get("sessions", []) if isinstance(s, dict)]
        return seconds, sessions
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}, []


def train(model: Model, dataset: Dataset, out: Path | RunDir, *, seed: int, epochs: int | None = None,
          backend: str = "c", progress: bool = True, plateau: bool = True, early_stopping: bool = True,
          resume: bool = False, overwrite: bool = False, semantics_override: str | None = None,
          dataset_arg: str | None = None, data_dir: str | None = None) -> TrainResult:
    """Everything `nitrogen train` does after loading the spec and the data set. `out`: the run directory (a
    path is claimed here: a new run must not exist or be empty unless `overwrite`; `resume` continues it).
    Returns the records of every epoch of the run; a run interrupted before its first epoch keeps nothing."""
    if isinstance(out, RunDir):
        run = out
    else:
        run = RunDir.existing(out) if resume else RunDir.new(out, out, overwrite)
    try:
        options = Options(seed, epochs or model.train.epochs, plateau, early_stopping, backend, semantics_override,
                          dataset_arg, data_dir)
        return _train(model, dataset, run, options, epochs_given=epochs is not None, resume=resume,
                      progress=progress)
    finally:
        run.release()


def _train(model: Model, dataset: Dataset, run: RunDir, options: Options, *, epochs_given: bool, resume: bool,
           progress: bool) -> TrainResult:
    report = Progress(progress)
    committed = resume       # the run directory holds a committed epoch: never discard it
    trainer: Trainer | None = None
    try:
        state = run.load_state() if resume else None
        if state is not None and not epochs_given:
            options = replace(options, max_epochs=state["options"]["max_epochs"])
        stats, train_x, test_x = prepare(dataset, model, options.seed)
        compiled = compile_model(model, stats)
        engine = make_backend(model, compiled, options.seed, options.backend)
        trainer = Trainer(model, dataset, compiled, stats, engine, options, run, report)
        if state is not None:
            check_resumable(state, model, dataset, stats, options, run)
            engine.checkpoint_load(run.read(LAST), str(run.path / LAST))
            seconds, trainer.sessions = _previous_summary(run)
            trainer.restore(state, seconds)
            run.start_csv(state["history"])  # drops a line a crash left after the last committed epoch
        else:
            start_run(run, model, compiled, Path(model.source).read_text(encoding="utf-8")
                      if os.path.exists(model.source) else "", options)
        n_eval = reference.eval_sample_count(len(test_x), model.train.batch_size, Semantics(model.semantics))
        scored = "" if n_eval == len(test_x) else f" ({n_eval} scored: whole batches, as the published code)"
        engine_name = "NumPy reference" if options.backend == "numpy" else "generated C"
        cont = f"; resuming after epoch {state['epoch']}" if state is not None else ""
        what = "samples" if getattr(dataset, "flat", False) else "images"
        report.say(f"{model.name} on {dataset.name}: {len(train_x)} training {what}, {len(test_x)} test "
                   f"{what}{scored} ({dataset.source})")
        report.say(f"{engine_name}, {model.semantics} semantics, seed {options.seed}{cont}")
        report.say(f"run directory {run.path}/ (metrics.csv and the checkpoints are written after every epoch)")
        trainer.write_summary("running")
        with _Stop().installed(report.say) as stop:
            result = trainer.fit(train_x, test_x, stop)
            committed = committed or trainer.committed > 0
            if committed:
                status = "interrupted" if result.interrupted else \
                    "early-stopped" if result.stopped_early else "finished"
                trainer.write_summary(status)
                draw_curves(run, model, dataset, result, report)
    except BaseException:
        if not committed and not (trainer is not None and trainer.committed):
            run.discard()
        elif trainer is not None and (trainer.committed or trainer.restored):
            try:
                trainer.write_summary("failed")  # the committed epochs stay, with a note
            except (OSError, NitrogenError):
                pass
        raise
    if not committed:  # interrupted before the first epoch: nothing to keep
        run.discard()
    return result


def draw_curves(run: RunDir, model: Model, dataset: Dataset, result: TrainResult, report: Progress) -> None:
    """curves.png, after everything else is safe on disk; a failure is a warning, never a lost run."""
    try:
        from .plot import learning_curves
        png = learning_curves(model, dataset.name, result.records)
    except ImportError as exc:
        report.say(f"warning: {CURVES} not drawn: {exc.name or 'matplotlib'} is not installed "
                   "(pip install 'nitrogen[plot]'); the run itself is complete")
        return
    except Exception as exc:  # noqa: BLE001 - a broken plotting install must not cost the run
        report.say(f"warning: {CURVES} not drawn ({exc.__class__.__name__}: {exc}); the run itself is complete")
        return
    run.write(CURVES, png)


def _stats_from(norm: Any) -> Stats | None:
    try:
        return Stats(tuple(norm["mean"]), tuple(norm["mad"]), int(norm["samples"]), int(norm["seed"]))
    except (KeyError, TypeError, ValueError):
        return None


def normalisation_near(path: Path) -> Stats | None:
    """The normalisation record of the run directory that holds `path` (its metrics.json), if there is one."""
    directory = path if path.is_dir() else path.parent
    try:
        summary = json.loads((directory / METRICS_JSON).read_text())
    except (OSError, ValueError):
        return None
    return _stats_from(summary.get("normalisation")) if isinstance(summary, dict) else None


def load_params_npz(path: Path, model: Model) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parameters and metadata of a `params.npz` (written by runs of nitrogen 0.1); checks that it belongs to
    this spec."""
    def bad(message: str) -> NitrogenError:
        return NitrogenError([Diagnostic("E420", f"{path}: {message}",
                                         hint="pass a run directory or a checkpoint (.ngck) of this spec")])
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


@dataclass(frozen=True)
class Trained:
    """What `evaluate` loads: a checkpoint's bytes (validated) or a params.npz's arrays, with the normalisation
    its run used."""

    stats: Stats
    source: str
    params: dict[str, np.ndarray] | None = None
    checkpoint: bytes = b""


def read_trained(model: Model, path: Path) -> Trained:
    """A run directory (its best.ngck), a checkpoint (by suffix or magic; normalisation from its run's
    metrics.json) or a params.npz of an earlier nitrogen (normalisation inside), validated against the spec
    before any data set is loaded."""
    if path.is_dir():
        if not (path / BEST).exists():
            raise NitrogenError([Diagnostic("E420", f"{path}: no {BEST} in this directory",
                                            hint="pass a run directory of `nitrogen train` or a .ngck file")])
        path = path / BEST
    if checkpoint.is_checkpoint(path):
        data = checkpoint.read_bytes(path)
        checkpoint.decode(checkpoint.format_of(model), data, str(path), owner=checkpoint.run_spec_name(path))
        stats = normalisation_near(path)
        if stats is None:
            raise NitrogenError([Diagnostic(
                "E428", f"{path}: no normalisation record for this checkpoint (evaluate reads it from the "
                "metrics.json that `nitrogen train` writes next to it)",
                hint="evaluate the checkpoint inside its run directory")])
        return Trained(stats, str(path), checkpoint=data)
    params, meta = load_params_npz(path, model)
    stats = _stats_from(meta.get("normalisation", {}))
    if stats is None:
        raise NitrogenError([Diagnostic("E420", f"{path}: the file has no normalisation record",
                                        hint="re-run `nitrogen train`")])
    return Trained(stats, str(path), params=params)


def evaluate(model: Model, dataset: Dataset, params: Path | Trained, *, backend: str = "c") -> tuple[int, int]:
    """(correct, evaluated) of a checkpoint or params.npz on the test set, with the normalisation it was
    trained with. A checkpoint goes through `<name>_checkpoint_load()` (or the Python reader for NumPy)."""
    from .data import fit_to_model

    trained = params if isinstance(params, Trained) else read_trained(model, params)
    test_x = normalize(fit_to_model(dataset, model, training=False).test_x, trained.stats)
    compiled = compile_model(model, trained.stats)
    engine = make_backend(model, compiled, trained.stats.seed, backend)
    if trained.checkpoint:
        engine.checkpoint_load(trained.checkpoint, trained.source)
    else:
        assert trained.params is not None
        try:
            engine.set_params(trained.params)
        except ValueError as exc:
            raise NitrogenError([Diagnostic("E420", f"{trained.source}: {exc}")]) from None
    n_eval = reference.eval_sample_count(len(test_x), model.train.batch_size, Semantics(model.semantics))
    return engine.evaluate(test_x[:n_eval], dataset.test_y[:n_eval]), n_eval


__all__ = ["train", "evaluate", "read_trained", "Trained", "normalisation_near", "Trainer", "Rule", "EpochRecord",
           "TrainResult", "Options", "BACKENDS", "load_params_npz"]
