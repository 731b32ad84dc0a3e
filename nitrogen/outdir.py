"""All-or-nothing output directories for `compile` (training runs write as they go: `rundir.py`).

Everything is first written into a staging directory next to the output directory. Publishing then moves
the staged files into place one by one, after moving any file they replace into a backup directory; if a
move fails (a full disk, a permission, a signal), every step already taken is undone in reverse, so the
output directory is left exactly as it was: same files, same contents, no new subdirectories. Files of
the output directory that nitrogen does not write are never touched. Every OSError, from creating the
staging directory to the last move, is E430.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import Diagnostic, NitrogenError


def _cannot_write(out_dir: Path, error: OSError) -> NitrogenError:
    return NitrogenError([Diagnostic("E430", f"cannot write the output directory {out_dir}: "
                                     f"{error.strerror or error}", notes=("nothing was changed",),
                                     hint="choose another output directory (-o/--out) or free the path")])


def publish(stage: Path, out_dir: Path) -> None:
    """Move every file below `stage` to the same place below `out_dir`, or change nothing (E430)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise _cannot_write(out_dir, NotADirectoryError(20, "it exists and is not a directory"))
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.backup-", dir=out_dir.parent))
    created: list[Path] = []                      # directories this call made, to remove on failure
    moved: list[tuple[Path, Path | None]] = []    # (destination, its previous file in the backup or None)
    try:
        for directory in [out_dir, *(out_dir / p.relative_to(stage).parent for p in files)]:
            for d in reversed([directory, *directory.parents]):
                if not d.exists():
                    d.mkdir()
                    created.append(d)
        for item in files:
            dest = out_dir / item.relative_to(stage)
            previous: Path | None = None
            if dest.exists() or dest.is_symlink():
                previous = backup / item.relative_to(stage)
                previous.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, previous)
            moved.append((dest, previous))
            os.replace(item, dest)
    except BaseException as exc:
        for dest, previous in reversed(moved):
            if previous is not None:
                os.replace(previous, dest)
            else:
                dest.unlink(missing_ok=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _cannot_write(out_dir, exc) from None
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """Yield an empty staging directory next to `out_dir`; when the block succeeds its files are published
    into `out_dir`; on any error (or if publishing fails) `out_dir` is left exactly as it was."""
    made = missing_parents(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:  # a parent that is a file, a permission, a full disk
        remove_empty(made)
        raise _cannot_write(out_dir, exc) from None
    published = False
    try:
        yield stage
        publish(stage, out_dir)
        published = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not published:
            remove_empty(made)


def missing_parents(path: Path) -> list[Path]:
    """The parents of `path` that do not exist yet, deepest first (to remove them again on failure)."""
    return [d for d in path.parents if not d.exists()]


def remove_empty(directories: list[Path]) -> None:
    """Remove directories made on the way to an output directory, deepest first, while they are empty."""
    for d in directories:
        try:
            d.rmdir()
        except OSError:
            break


def write_files(files: dict[str, str], out_dir: Path) -> None:
    """Write {name: text} into `out_dir` all or nothing."""
    with staged_directory(out_dir) as stage:
        try:
            for name, text in files.items():
                (stage / name).write_text(text, encoding="utf-8")
        except OSError as exc:  # a full disk while staging: nothing was published
            raise _cannot_write(out_dir, exc) from None


__all__ = ["publish", "staged_directory", "write_files", "missing_parents", "remove_empty"]
