"""Preprocessing (semantics 3) by hand, the generated `<name>_normalize()` bit for bit against
`preprocess.normalize`, the generated epoch shuffle against the reference's permutation, and the
plateau / early-stopping rules of semantics 7 on hand-made sequences."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

from nitrogen import reference
from nitrogen.pipeline import compile_model
from nitrogen.preprocess import Stats, normalize, statistics
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
