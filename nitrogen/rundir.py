"""Run directories of `nitrogen train`: claimed before any work, written as training goes, never merged.

A run directory holds one training run:

    spec.yaml | spec.ng   the spec as given (a comment on top names any --semantics override)
    c/                    the generated C that trained, with <name>_normalize() for the run's data
    metrics.csv           one line per finished epoch, appended and flushed as the epoch ends
    metrics.json          the summary: options, data files and checksums, sessions, status, best epoch
    trainer.json          the trainer state that `--resume` restores (versioned, CRC-checked)
    last.ngck, best.ngck  checkpoints after the last epoch and after the best one (the headline accuracy)
    curves.png            learning curves, drawn when the run ends (optional: needs matplotlib)

Crash safety. After every epoch `commit()` writes the new checkpoints as `*.ngck.new`, then replaces
`trainer.json` (the commit point: it names the SHA-256 of the checkpoints it belongs to), then renames the
`.new` files into place, then appends the epoch's line to metrics.csv. Every file is replaced with
write-to-temporary, fsync, rename, so a crash, a SIGKILL or an out-of-memory kill at any instant leaves
either the previous epoch or the new one; `recover()` (run by `--resume`) finishes or drops a half-done
commit and rewrites metrics.csv from the trainer state's history, so a resumed run continues exactly.

Claiming. The default directory gets a fresh versioned name (`runs/<spec>-<data>-s<seed>`, then `-v2`,
...; `mkdir` is atomic, so two runs never pick the same one). An explicit `--out` that exists and is not
empty is refused (E432) unless `--resume` continues that run or `--overwrite` replaces it; the replaced
run's files are kept aside and deleted only once the new run has finished an epoch, and restored if it
fails before. A run holds an advisory lock on its directory while it trains (E432 for a second process).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import Diagnostic, NitrogenError
from .outdir import missing_parents, remove_empty

try:  # POSIX advisory locks; elsewhere a run simply holds no lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TRAINER_FILE = "trainer.json"
TRAINER_FORMAT = "nitrogen.trainer"
TRAINER_VERSION = 1
LAST, BEST = "last.ngck", "best.ngck"
METRICS_CSV, METRICS_JSON, CURVES = "metrics.csv", "metrics.json", "curves.png"
LOCK = ".lock"
# Every name a run writes (and those of runs of earlier nitrogen versions): what --overwrite replaces.
RUN_FILES = (TRAINER_FILE, LAST, BEST, METRICS_CSV, METRICS_JSON, CURVES, "spec.yaml", "spec.ng", "c",
             "params.npz", "checkpoint.ngck", LAST + ".new", BEST + ".new")
CSV_COLUMNS = ("epoch", "train_loss", "train_loss_per_sample", "train_acc", "test_acc", "train_correct",
               "train_seen", "test_correct", "test_seen", "lr_inv")


def _error(code: str, message: str, hint: str | None = None, notes: Sequence[str] = ()) -> NitrogenError:
    return NitrogenError([Diagnostic(code, message, notes=tuple(notes), hint=hint)])


def cannot_write(path: Path, error: OSError) -> NitrogenError:
    """E430: a path of the run directory cannot be created or written."""
    return _error("E430", f"cannot write the output directory {path}: {error.strerror or error}",
                  notes=("nothing was changed",), hint="choose another output directory (--out) or free the path")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some systems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a temporary file in the same directory, fsync, rename, fsync the directory.
    A reader (or a crash) sees the old content or the new one, never a mixture."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def csv_rows(history: Iterable[dict[str, int]]) -> str:
    """metrics.csv lines (without the header) for trainer-state history entries: integers, and accuracies
    rounded to 4 decimals, so the text is the same on every machine and after every resume."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for h in history:
        seen, tseen = max(1, h["train_seen"]), max(1, h["test_seen"])
        writer.writerow([h["epoch"], h["train_loss"], h["train_loss"] // seen,
                         f"{100 * h['train_correct'] / seen:.4f}", f"{100 * h['test_correct'] / tseen:.4f}",
                         h["train_correct"], h["train_seen"], h["test_correct"], h["test_seen"], h["lr_inv"]])
    return buf.getvalue()


CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"


# ---------------------------------------------------------------------------------------------
# The trainer state file


def encode_state(state: dict[str, Any]) -> bytes:
    """trainer.json: the state with its format, version and a CRC-32 of the state's canonical JSON."""
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    doc = {"format": TRAINER_FORMAT, "version": TRAINER_VERSION, "crc32": f"{zlib.crc32(canonical):08x}",
           "state": state}
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def decode_state(data: bytes, source: str) -> dict[str, Any]:
    """Check a trainer.json the way checkpoints are checked: format, version, CRC (E421, E422, E426)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error("E421", f"{source}: not a nitrogen trainer state ({exc})",
                     hint="the run directory's trainer.json was damaged; start the run again with --overwrite") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != TRAINER_FORMAT or not isinstance(doc.get("state"), dict):
        raise _error("E421", f"{source}: not a nitrogen trainer state (no '{TRAINER_FORMAT}' format field)")
    if doc.get("version") != TRAINER_VERSION:
        raise _error("E422", f"{source}: trainer state version {doc.get('version')!r}; this nitrogen reads version "
                     f"{TRAINER_VERSION}", hint="resume it with the nitrogen version that wrote it")
    state: dict[str, Any] = doc["state"]
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    if doc.get("crc32") != f"{zlib.crc32(canonical):08x}":
        raise _error("E426", f"{source}: corrupt trainer state: the stored CRC-32 is {doc.get('crc32')!r}, the "
                     f"content's {zlib.crc32(canonical):08x}", hint="the file was changed after it was written")
    return state


# ---------------------------------------------------------------------------------------------
# Claiming a directory


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != LOCK)


def is_run(directory: Path) -> bool:
    """True when `directory` holds a nitrogen run (of this version or an earlier one)."""
    return any((directory / n).exists() for n in (TRAINER_FILE, METRICS_JSON, "checkpoint.ngck", LAST))


def versioned(base: Path) -> Iterator[Path]:
    """base, base-v2, base-v3, ... (the candidates for a default run directory)."""
    yield base
    n = 2
    while True:
        yield base.with_name(f"{base.name}-v{n}")
        n += 1


@dataclass
class RunDir:
    """A claimed run directory. `created`: it did not exist before this run; `replaced`: where --overwrite put
    the previous run's files until this run has finished an epoch."""

    path: Path
    created: bool
    replaced: Path | None = None
    parents_made: list[Path] = field(default_factory=list)  # missing parents created for it, deepest first
    _lock_fd: int | None = field(default=None, repr=False)
    _state: dict[str, Any] | None = field(default=None, repr=False)  # the checked trainer state, once loaded

    # -- claiming -------------------------------------------------------------------------------
    @classmethod
    def new(cls, out: Path | None, default: Path, overwrite: bool) -> RunDir:
        """Claim the directory of a new run: a fresh versioned default, or `out` when it is new or empty (or
        with `overwrite`). Creates it now, so a bad path fails before any work (E430, E432)."""
        if out is None:
            return cls._new_default(default)
        if out.exists() or out.is_symlink():
            if not out.is_dir():
                raise cannot_write(out, NotADirectoryError(20, "it exists and is not a directory"))
            entries = _entries(out)
            if entries and not overwrite:
                what = "a nitrogen run" if is_run(out) else f"{len(entries)} other file(s): {', '.join(entries[:5])}"
                raise _error("E432", f"the output directory {out} already holds {what}",
                             notes=("a new run never writes into an existing one",),
                             hint=f"continue that run with `--resume {out}`, replace it with --overwrite, or choose "
                                  "another --out (without --out, runs go to a fresh runs/<spec>-<data>-s<seed>[-vN])")
            run = cls(out, False)._locked()
            if entries:
                run._set_aside()
            return run
        made = missing_parents(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.mkdir()
        except OSError as exc:
            remove_empty(made)
            raise cannot_write(out, exc) from None
        return cls(out, True, parents_made=made)._locked()

    @classmethod
    def _new_default(cls, default: Path) -> RunDir:
        for candidate in versioned(default):
            made = missing_parents(candidate)
            try:
                candidate.parent.mkdir(parents=True, exist_ok=True)
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                remove_empty(made)
                raise cannot_write(candidate, exc) from None
            return cls(candidate, True, parents_made=made)._locked()
        raise AssertionError("unreachable: versioned() never ends")

    @classmethod
    def existing(cls, path: Path) -> RunDir:
        """Claim a run directory to resume it (E433 when it holds no run)."""
        if not path.is_dir():
            raise _error("E433", f"--resume {path}: {'not a directory' if path.exists() else 'no such directory'}",
                         hint="pass the run directory that `nitrogen train` printed (runs/<spec>-<data>-s<seed>)")
        if not (path / TRAINER_FILE).exists():
            why = ("it was written by an earlier nitrogen, whose runs cannot be resumed exactly (no trainer.json)"
                   if (path / "checkpoint.ngck").exists() else "it holds no finished epoch (no trainer.json)")
            raise _error("E433", f"--resume {path}: {why}",
                         hint="start the run again (--overwrite replaces it)")
        return cls(path, False)._locked()

    def _locked(self) -> RunDir:
        if fcntl is None:
            return self
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self._undo_claim()
            raise cannot_write(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _error("E432", f"the run directory {self.path} is in use by another `nitrogen train`",
                         hint="wait for it to finish, or choose another --out") from None
        self._lock_fd = fd
        return self

    def _set_aside(self) -> None:
        """--overwrite: move the previous run's files out of the way (kept until this run has an epoch)."""
        aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=self.path))
        for name in RUN_FILES:
            if (self.path / name).exists() or (self.path / name).is_symlink():
                os.replace(self.path / name, aside / name)
        self.replaced = aside

    # -- finishing --------------------------------------------------------------------------------
    def keep(self) -> None:
        """The run has committed an epoch: the replaced run's files can go."""
        if self.replaced is not None:
            shutil.rmtree(self.replaced, ignore_errors=True)
            self.replaced = None

    def discard(self) -> None:
        """The run ends before its first epoch: remove what it wrote and put back what it replaced."""
        for name in RUN_FILES:
            p = self.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for stray in self.path.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
        if self.replaced is not None:
            for item in self.replaced.iterdir():
                os.replace(item, self.path / item.name)
            self.replaced.rmdir()
            self.replaced = None
        self._undo_claim()

    def _undo_claim(self) -> None:
        self.release()
        (self.path / LOCK).unlink(missing_ok=True)
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            remove_empty(self.parents_made)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            (self.path / LOCK).unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------------------------------
    def write(self, name: str, data: bytes | str) -> None:
        """Replace one file of the run atomically (E430 on failure)."""
        target = self.path / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, data.encode() if isinstance(data, str) else data)
        except OSError as exc:
            raise cannot_write(target, exc) from None

    def start_csv(self, history: Sequence[dict[str, int]]) -> None:
        """metrics.csv with the header and the rows of `history` (a new run: none; a resumed run: its epochs)."""
        self.write(METRICS_CSV, CSV_HEADER + csv_rows(history))

    def commit(self, state: dict[str, Any], last: bytes, best: bytes | None) -> None:
        """Make one finished epoch durable (see the module docstring for the order and why it is safe).
        `state` must name the SHA-256 of `last` and of the best checkpoint; `best` is None when the best
        epoch did not change."""
        try:
            new_files = [(LAST, last)] + ([(BEST, best)] if best is not None else [])
            for name, data in new_files:
                write_atomic(self.path / (name + ".new"), data)
            write_atomic(self.path / TRAINER_FILE, encode_state(state))          # the commit point
            for name, _ in new_files:
                os.replace(self.path / (name + ".new"), self.path / name)
            _fsync_dir(self.path)
            with open(self.path / METRICS_CSV, "a", encoding="utf-8") as f:
                f.write(csv_rows(state["history"][-1:]))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise cannot_write(self.path, exc) from None
        self.keep()

    def load_state(self) -> dict[str, Any]:
        """Read and check trainer.json, then finish or drop a half-done commit so that last.ngck and best.ngck
        are the checkpoints the state names (E433 when they are missing or do not match). Done once per claim:
        later calls return the same state."""
        if self._state is not None:
            return self._state
        source = str(self.path / TRAINER_FILE)
        try:
            data = (self.path / TRAINER_FILE).read_bytes()
        except OSError as exc:
            raise _error("E433", f"{source}: cannot read the trainer state ({exc.strerror})") from None
        state = decode_state(data, source)
        for name in (LAST, BEST):
            want = state["files"][name]
            current, pending = self.path / name, self.path / (name + ".new")
            if pending.exists() and _file_sha(pending) == want:
                os.replace(pending, current)   # the crash came between the commit point and the rename
            pending.unlink(missing_ok=True)     # a checkpoint written before the crash, never committed
            if _file_sha(current) != want:
                raise _error("E433", f"{current}: the checkpoint is not the one {TRAINER_FILE} names (sha256 "
                             f"{want[:12]}...)", hint="the run directory was changed by hand; start the run again")
        self._state = state
        return state

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


def _file_sha(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes())
    except OSError:
        return None




__all__ = ["RunDir", "TRAINER_FILE", "LAST", "BEST", "METRICS_CSV", "METRICS_JSON", "CURVES", "CSV_COLUMNS",
           "CSV_HEADER", "csv_rows", "encode_state", "decode_state", "write_atomic", "sha256", "cannot_write",
           "is_run", "versioned"]
