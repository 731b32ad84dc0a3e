"""Preprocessing (docs/semantics.md#preprocessing) by hand, against its formulas written out over the whole set
(bit for bit) and within a memory budget, the generated `<name>_normalize()` bit for bit against
`preprocess.normalize`, the generated epoch shuffle against the reference's permutation, and the
plateau / early-stopping rules of docs/semantics.md#training-protocol on hand-made sequences."""

from __future__ import annotations

import ctypes
import shutil
import tracemalloc
from typing import Any

import numpy as np
import pytest

from nitrogen import reference
from nitrogen.pipeline import compile_model
from nitrogen.preprocess import Stats, lookup_tables, normalize, statistics
from nitrogen.train import Rule

from conftest import load

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")


def test_statistics_by_hand() -> None:
    # One channel, 2 images of 1x2 pixels: x - 128 = [-128, -127, 0, 1]; sum -254 over n = 4 -> tdiv = -63
    # (floor would give -64); |x_c - (-63)| = [65, 64, 63, 64] -> 256 / 4 = 64.
    x = np.array([[[[0, 1]]], [[[128, 129]]]], dtype=np.uint8)
    s = statistics(x, seed=0, stats_samples=10)
    assert (s.mean, s.mad, s.samples) == ((-63,), (64,), 2)
    # Normalisation: tdiv((x_c + 63) * 51, 64): -65*51/64 = -51.8 -> -51; -64*51/64 = -51; 63*51/64 = 50.2 -> 50;
    # 64*51/64 = 51.
    assert normalize(x, s).reshape(-1).tolist() == [-51, -51, 50, 51]


def test_statistics_use_the_first_samples_of_permutation_zero() -> None:
    # 5 constant images 0, 10, 20, 30, 40; with stats_samples = 2 only the first two of pi_0 count.
    x = (np.arange(5, dtype=np.uint8) * 10).reshape(5, 1, 1, 1).repeat(2, axis=3)
    x[:, :, :, 1] += 1  # keep every MAD > 0
    order = reference.Pcg32(7, 1).permutation(5)
    chosen = [int(order[0]), int(order[1])]
    s = statistics(x, seed=7, stats_samples=2)
    values = [10 * i + d - 128 for i in chosen for d in (0, 1)]
    total = sum(values)
    mean = -((-total) // 4) if total < 0 else total // 4
    assert s.mean == (mean,)


def test_normalisation_clips_to_int8() -> None:
    s = Stats((0,), (1,), 1, 0)
    x = np.array([0, 127, 128, 129, 255], dtype=np.uint8).reshape(1, 1, 1, 5)
    assert normalize(x, s).reshape(-1).tolist() == [-128, -51, 0, 51, 127]


def tdiv(a: Any, b: int) -> Any:
    return np.where(a < 0, -((-a) // b), a // b)


def statistics_by_formula(x: np.ndarray, seed: int, stats_samples: int) -> Stats:
    """The statistics of docs/semantics.md#preprocessing written out over int64 copies of the whole statistics set."""
    order = reference.Pcg32(seed, 1).permutation(len(x))
    centred = x[np.asarray(order[:min(stats_samples, len(x))])].astype(np.int64) - 128
    n = centred.shape[0] * centred.shape[2] * centred.shape[3]
    means = [int(tdiv(np.int64(centred[:, c].sum()), n)) for c in range(x.shape[1])]
    mads = [int(tdiv(np.int64(np.abs(centred[:, c] - m).sum()), n)) for c, m in enumerate(means)]
    return Stats(tuple(means), tuple(mads), len(centred), seed)


def normalize_by_formula(x: np.ndarray, s: Stats) -> np.ndarray:
    """The normalisation of docs/semantics.md#preprocessing written out over int64 copies."""
    out = np.empty(x.shape, dtype=np.int8)
    for c, (mean, mad) in enumerate(zip(s.mean, s.mad)):
        out[:, c] = np.clip(tdiv((x[:, c].astype(np.int64) - 128 - mean) * 51, mad), -128, 127)
    return out


@pytest.mark.parametrize("shape, n, samples", [((1, 6, 5), 37, 25_000), ((3, 4, 4), 700, 300), ((2, 1, 9), 5000, 4999),
                                               ((1, 28, 28), 3000, 1000)])
def test_statistics_and_normalize_are_the_formulas_bit_for_bit(shape: tuple[int, int, int], n: int, samples: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x[: n // 3, 0] //= 7  # skewed channel: negative means, truncation toward zero matters
    s = statistics(x, seed=n, stats_samples=samples)
    assert s == statistics_by_formula(x, n, samples)
    expected = normalize_by_formula(x, s)
    assert np.array_equal(normalize(x, s), expected)
    for extreme in (Stats(tuple(-128 + 100 * c for c in range(shape[0])), (1,) * shape[0], 1, 0),
                    Stats((127,) * shape[0], (2**40,) * shape[0], 1, 0)):
        assert np.array_equal(normalize(x, extreme), normalize_by_formula(x, extreme))
    in_place = x.copy()
    assert np.array_equal(normalize(in_place, s, out=in_place.view(np.int8)), expected)
    assert np.array_equal(in_place.view(np.int8), expected)  # the uint8 buffer now holds the int8 result


def test_lookup_tables_cover_every_byte() -> None:
    s = Stats((-94, 3), (55, 1), 1, 0)
    tables = lookup_tables(s)
    assert tables.shape == (2, 256) and tables.dtype == np.int8
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 1, 256).repeat(2, axis=1)
    assert np.array_equal(tables, normalize_by_formula(x, s)[0, :, 0, :])


def test_statistics_and_normalize_make_no_int64_copy_of_the_set() -> None:
    # 20 000 MNIST-sized images are 15.7 MB of uint8; an int64 copy of them would be 125 MB.
    x = np.random.default_rng(0).integers(0, 256, size=(20_000, 1, 28, 28), dtype=np.uint8)
    tracemalloc.start()
    try:
        s = statistics(x, seed=1)
        _, peak_stats = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = normalize(x, s)
        _, peak_norm = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_stats < 16 * 2**20, f"statistics() peaked at {peak_stats / 2**20:.1f} MB"
    assert peak_norm < x.nbytes + 16 * 2**20, f"normalize() peaked at {peak_norm / 2**20:.1f} MB (result {out.nbytes / 2**20:.1f} MB)"


@needs_cc
@pytest.mark.parametrize("spec", ["tiny_mlp", "vgg8b_cifar10_w8"])
def test_generated_normalize_matches_python(spec: str) -> None:
    from nitrogen.native import build_library

    model = load(f"{spec}.yaml")
    c, h, w = model.input_shape
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=(40, c, h, w), dtype=np.uint8)
    raw[0] = 0
    raw[1] = 255
    stats = statistics(raw, seed=11)
    # Extreme statistics too: a tiny MAD clips almost everything, a negative mean exercises tdiv.
    for st in (stats, Stats(tuple(-100 + 7 * i for i in range(c)), tuple(1 + 2 * i for i in range(c)), 1, 0)):
        compiled = compile_model(model, st)
        lib = ctypes.CDLL(str(build_library(compiled)))
        fn = getattr(lib, f"{model.name}_normalize")
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32], ctypes.c_int
        out = np.zeros(raw.shape, dtype=np.int8)
        assert fn(raw.ctypes.data, out.ctypes.data, len(raw)) == 0
        assert np.array_equal(out, normalize(raw, st))


@needs_cc
@pytest.mark.parametrize("mode", ["nitrogen", "reference"])
def test_generated_shuffle_matches_the_reference_permutation(mode: str) -> None:
    from nitrogen.native import Native
    from nitrogen.spec import with_semantics

    model = with_semantics(load("tiny_mlp.yaml"), mode)
    native = Native(compile_model(model), seed=5)
    ref = reference.Model(model, seed=5)
    for n in (1, 2, 97, 1000):  # consecutive epochs keep drawing from the same stream
        assert native.shuffle(n).tolist() == ref.permutation(n)
    assert {k: v.tolist() for k, v in native.params.items()} == {k: v.tolist() for k, v in ref.params.items()}


def test_plateau_rule_by_hand() -> None:
    # from_epoch 3, patience 2, min_delta 1 point of N_eval = 200 -> a gain needs >= 2 more correct.
    rule = Rule(patience=2, from_epoch=3, min_delta_pct=1)
    fired = [rule.fires(e, c, 200) for e, c in enumerate([10, 180, 100, 101, 101, 102, 150, 150, 151], start=1)]
    # epochs 1-2 ignored; 3 sets best 100; 4 (+1) no gain; 5 (+1) no gain -> fires, counter restarts;
    # 6 (+2 over 100) gain, best 102; 7 gain, best 150; 8 none; 9 (+1) none -> fires.
    assert fired == [False, False, False, False, True, False, False, False, True]


def test_early_stopping_rule_disabled() -> None:
    rule = Rule(patience=1, from_epoch=1, min_delta_pct=1, enabled=False)
    assert not any(rule.fires(e, 0, 100) for e in range(1, 10))
