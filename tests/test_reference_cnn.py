"""Unit tests of the CNN part of the NumPy reference interpreter: conv blocks, learning pools, feature-extractor
pools and dropout (`nitrogen/reference.py`; docs/semantics.md#layers, #learning-pools, #the-training-step,
#initialisation).

Expected values are typed from the paper networks' constants or worked out by hand in the comments from
docs/semantics.md, never copied from running the code. Oracles are plain Python-int loops written here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import nitrogen
from nitrogen import reference as ref
from nitrogen.reference import (
    Model, Pcg32, PoolGeometry, avg_pool, avg_pool_backward, dropout, dropout_factor, int_conv2d,
    int_conv2d_weight_grad, learning_pool_search, max_pool, max_pool_backward,
)
from nitrogen.spec import Semantics, with_semantics

SPECS = Path(__file__).resolve().parent.parent / "specs"
NG, REF = Semantics.NITROGEN, Semantics.REFERENCE


def spec(name: str, sem: str | None = None):
    return with_semantics(nitrogen.load_spec(str(SPECS / f"{name}.yaml")), sem)


def batch(s, seed: int):
    """A deterministic int8 batch and labels for spec `s`, from PCG32 (no np.random)."""
    r = Pcg32(seed, 5)
    n = s.train.batch_size
    x = r.uniform_ints(-128, 127, n * s.input_len).reshape((n,) + tuple(s.input_shape)).astype(np.int8)
    y = r.uniform_ints(0, s.num_classes - 1, n).astype(np.uint8)
    return x, y


def arr(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


# ------------------------------------------------------------------------------------------------------------------
# Learning-pool search (docs/semantics.md#learning-pools) against the paper's CNNs
# ------------------------------------------------------------------------------------------------------------------

# (C_out, H_o) -> ((kh, kw), (ph, pw), D) of every block: VGG8B on 3x32x32 and on 1x28x28, VGG11B on 3x32x32;
# typed here, not computed by nitrogen.
VGG8B_CIFAR_POOLS = [((128, 32), ((8, 4), (0, 0), 4096)), ((256, 32), ((8, 8), (0, 0), 4096)),
             ((256, 16), ((4, 4), (0, 0), 4096)), ((512, 16), ((8, 4), (0, 0), 4096)),
             ((512, 8), ((4, 2), (0, 0), 4096)), ((512, 4), ((2, 1), (0, 0), 4096))]
VGG8B_28_POOLS = [((128, 28), ((8, 4), (4, 0), 3584)), ((256, 28), ((8, 8), (4, 4), 4096)),
             ((256, 14), ((4, 4), (2, 2), 4096)), ((512, 14), ((8, 4), (4, 2), 4096)),
             ((512, 7), ((4, 2), (2, 1), 4096)), ((512, 3), ((2, 1), (1, 0), 3072))]
VGG11B_CIFAR_POOLS = [((128, 32), ((8, 4), (0, 0), 4096))] * 3 + [
    ((256, 32), ((8, 8), (0, 0), 4096)), ((256, 16), ((4, 4), (0, 0), 4096)), ((512, 16), ((8, 4), (0, 0), 4096)),
    ((512, 8), ((4, 2), (0, 0), 4096)), ((512, 8), ((4, 2), (0, 0), 4096)), ((512, 4), ((2, 1), (0, 0), 4096))]


@pytest.mark.parametrize("table", [VGG8B_CIFAR_POOLS, VGG8B_28_POOLS, VGG11B_CIFAR_POOLS],
                         ids=["vgg8b-cifar10", "vgg8b-28x28", "vgg11b-cifar10"])
def test_learning_pool_search_matches_paper_tables(table):
    for (c_out, h_o), (kernel, pad, d) in table:
        g, got_d = learning_pool_search(c_out, h_o, 4096)
        assert g is not None
        assert ((g.kh, g.kw), (g.ph, g.pw), got_d) == (kernel, pad, d), (c_out, h_o)
        assert c_out * g.out_h * g.out_w == d  # the pooled size is exactly (dh, dw)


def test_learning_pool_search_small_cases():
    assert learning_pool_search(4, 3, 4096) == (None, 36)  # D = 36 <= P: no pool
    # tiny_cnn block 0: 3 x 9 x 9, P = 16: 243 -> 135 -> 75 -> 45 -> 27 -> 18 -> 12 with kernel (8, 8); dh = dw = 2,
    # ph = pw = (8 * (2 - 1)) // 2 = 4
    g, d = learning_pool_search(3, 9, 16)
    assert (g.kh, g.kw, g.ph, g.pw, g.out_h, g.out_w, d) == (8, 8, 4, 4, 2, 2, 12)
    # D may stay above P when the loop stops on kh >= H_o: 64 x 2 x 2 with P = 1 -> kernel (2, 2), D = 64
    g, d = learning_pool_search(64, 2, 1)
    assert (g.kh, g.kw, g.ph, g.pw, d) == (2, 2, 0, 0, 64)


def test_uncovered_rows_of_vgg8b_mnist_get_zero_gradient():
    # VGG8B on 28x28: block 3 (14 x 14, kernel (8, 4), padding (4, 2)) leaves rows 12-13 uncovered; block 4
    # (7 x 7, (4, 2), padding (2, 1)) leaves row 6. Every column is covered in both.
    for size, (kh, kw, ph, pw), rows in [(14, (8, 4, 4, 2), [12, 13]), (7, (4, 2, 2, 1), [6])]:
        g = PoolGeometry(kh, kw, ph, pw, size, size)
        ones = np.ones((1, 1, g.out_h, g.out_w), dtype=np.int64)
        arg = np.full((1, 1, g.out_h, g.out_w), kh * kw - 1)  # the last cell of each window: always a real one here
        got = avg_pool_backward(ones * kh * kw, g)  # every real covered cell receives 1
        covered = [r for r in range(size) if r not in rows]
        assert got[0, 0, rows, :].tolist() == [[0] * size] * len(rows)
        assert (got[0, 0, covered, :] == 1).all()
        assert max_pool_backward(ones, arg, g)[0, 0, rows, :].tolist() == [[0] * size] * len(rows)


# ------------------------------------------------------------------------------------------------------------------
# Max pool and average pool by hand (docs/semantics.md#pools)
# ------------------------------------------------------------------------------------------------------------------

# 7 x 3 input, kernel (4, 2), padding (2, 1): out 2 x 2. Windows cover rows -2..1 and 2..5 (row 6 uncovered) and
# columns -1..0 and 1..2. Window (0,0) holds real cells (0,0), (1,0) at window indices 5, 7 and 6 padding cells;
# window (0,1) holds (0,1), (0,2), (1,1), (1,2) at indices 4..7; window (1,0) holds (2..5, 0) at the odd indices;
# window (1,1) holds (2..5, 1..2), no padding.
POOL_G = PoolGeometry(4, 2, 2, 1, 7, 3)
POOL_X = [[-5, 3, 3],
          [-7, -2, 1],
          [-4, 9, -1],
          [-4, 2, 9],
          [-9, 9, 0],
          [-6, -3, 4],
          [50, 60, 70]]  # uncovered: never a candidate
POOL_D = [[10, -20], [30, -40]]


def test_max_pool_by_hand_nitrogen():
    y, arg = max_pool(arr([[POOL_X]]), POOL_G, NG)
    # (0,0): max(-5, -7) = -5; (0,1): 3 twice, the first in row-major order is (0,1); (1,0): -4 twice, first (2,0);
    # (1,1): 9 three times, first (2,1). Padding is never a candidate.
    assert y.tolist() == [[[[-5, 3], [-4, 9]]]]
    assert arg.tolist() == [[[[5, 4], [1, 0]]]]
    d = max_pool_backward(arr([[POOL_D]]), arg, POOL_G)
    want = [[0] * 3 for _ in range(7)]
    want[0][0], want[0][1], want[2][0], want[2][1] = 10, -20, 30, -40
    assert d.tolist() == [[want]]


def test_max_pool_by_hand_reference_padding_wins():
    y, arg = max_pool(arr([[POOL_X]]), POOL_G, REF)
    # Padding holds 0: in window (0,0) the first padding cell (index 0) beats -5; in window (1,0) the padding at index
    # 0 beats -4. Windows (0,1) and (1,1) are as in nitrogen (3 > 0, 9 > 0).
    assert y.tolist() == [[[[0, 3], [0, 9]]]]
    assert arg.tolist() == [[[[0, 4], [0, 0]]]]
    d = max_pool_backward(arr([[POOL_D]]), arg, POOL_G)
    want = [[0] * 3 for _ in range(7)]
    want[0][1], want[2][1] = -20, -40  # the gradients of windows won by padding are discarded
    assert d.tolist() == [[want]]


@pytest.mark.parametrize("column, sem, y, cell", [
    # 5 x 1 input, kernel (4, 1), padding (2, 0): window 0 = [pad, pad, x0, x1], window 1 = [x2, x3, x4, pad]
    ([3, 1, 0, -1, -2], REF, [3, 0], [0, 2]),    # a real 0 precedes the bottom padding 0: the real cell wins
    ([-3, -1, -5, -1, -2], REF, [0, 0], [None, None]),  # top padding wins window 0, bottom padding window 1
    ([-3, -1, -5, -1, -2], NG, [-1, -1], [1, 3]),  # nitrogen: real cells only; -1 at x1 and at x3
])
def test_max_pool_ties_with_padding_in_row_major_order(column, sem, y, cell):
    g = PoolGeometry(4, 1, 2, 0, 5, 1)
    x = arr(column).reshape(1, 1, 5, 1)
    got_y, arg = max_pool(x, g, sem)
    assert got_y.reshape(-1).tolist() == y
    d = max_pool_backward(arr([7, -9]).reshape(1, 1, 2, 1), arg, g).reshape(-1).tolist()
    want = [0] * 5
    for delta, c in zip([7, -9], cell):
        if c is not None:
            want[c] = delta
    assert d == want


def test_avg_pool_by_hand():
    y = avg_pool(arr([[POOL_X]]), POOL_G)
    # divisor kh*kw = 8, padding counts as 0: sums -12, 5, -23, 29 -> tdiv -1, 0, -2, 3 (floor would give -2, -3)
    assert y.tolist() == [[[[-1, 0], [-2, 3]]]]
    d = avg_pool_backward(arr([[POOL_D]]), POOL_G)
    # tdiv(10, 8) = 1, tdiv(-20, 8) = -2, tdiv(30, 8) = 3, tdiv(-40, 8) = -5, to every real cell; row 6 gets 0
    assert d.tolist() == [[[[1, -2, -2], [1, -2, -2], [3, -5, -5], [3, -5, -5], [3, -5, -5], [3, -5, -5],
                            [0, 0, 0]]]]


def test_feature_extractor_pools_drop_the_last_row_and_column():
    # 5 x 5, kernel 2, stride 2, no padding: H_o = 5 // 2 = 2; row 4 and column 4 are ignored
    x = arr([[[[1, -2, 3, 4, 99], [5, 0, -7, -8, 99], [-1, -1, 2, 6, 99], [-3, -9, 6, 1, 99], [99] * 5]]])
    g = PoolGeometry(2, 2, 0, 0, 5, 5)
    for sem in (NG, REF):
        assert max_pool(x, g, sem)[0].tolist() == [[[[5, 4], [-1, 6]]]]
    # sums 4, -8, -14, 15 -> tdiv by 4: 1, -2, -3, 3
    assert avg_pool(x, g).tolist() == [[[[1, -2], [-3, 3]]]]


def test_pool_geometry_is_checked():
    with pytest.raises(ValueError):
        PoolGeometry(4, 2, 3, 0, 8, 8)  # ph > kh // 2
    with pytest.raises(ValueError):
        PoolGeometry(4, 4, 0, 0, 3, 3)  # no window fits


# ------------------------------------------------------------------------------------------------------------------
# Dropout (docs/semantics.md#dropout)
# ------------------------------------------------------------------------------------------------------------------

def test_dropout_rescale_factors_from_the_document():
    table = {5: 1052, 10: 1111, 15: 1176, 20: 1250, 25: 1333, 30: 1428, 35: 1538, 40: 1666, 45: 1818, 50: 2000,
             55: 2222, 60: 2500, 65: 2857, 70: 3333, 75: 4000, 80: 5000, 85: 6666, 90: 10000, 95: 20000}
    assert {p: dropout_factor(p) for p in table} == table
    assert dropout_factor(1) == 1010 and dropout_factor(99) == 100000
    for bad in (0, 100):
        with pytest.raises(ValueError):
            dropout_factor(bad)


class FixedDraws:
    """Stands in for rng_train with known uniform_int(0, 99) draws, so the mask is known by hand."""

    def __init__(self, draws):
        self.draws = draws
        self.calls = []

    def uniform_ints(self, lo, hi, count):
        self.calls.append((lo, hi, count))
        assert count == len(self.draws)
        return np.array(self.draws, dtype=np.int64)


def test_dropout_forward_with_a_known_mask():
    # pct 10: keep iff draw >= 10. Draws 9, 10, 55, 0, 99, 42 -> mask 0, 1, 1, 0, 1, 1. R = 1111.
    x = arr([[10, -10, 91], [-67, 7, -1]])
    rng = FixedDraws([9, 10, 55, 0, 99, 42])
    y = dropout(x, 10, rng)
    # tdiv(-10*1111, 1000) = -11; 91 -> 101; 7 -> 7; -1 -> tdiv(-1111, 1000) = -1 (floor would be -2)
    assert y.tolist() == [[0, -11, 101], [0, 7, -1]]
    assert rng.calls == [(0, 99, 6)]  # one draw per element, keep(pct) = [uniform_int(0, 99) >= pct]
    # range example: [-67, 91] at 10 % -> [-74, 101]; at 35 % (R = 1538) -67 -> -103 (floor: -104)
    assert dropout(arr([-67, 91]), 10, FixedDraws([50, 50])).tolist() == [-74, 101]
    assert dropout(arr([-67]), 35, FixedDraws([35])).tolist() == [-103]
    assert dropout(arr([-1, 3]), 95, FixedDraws([95, 99])).tolist() == [-20, 60]


def test_dropout_draws_elementwise_in_c_order_from_the_rng():
    x = np.arange(-40, 40, dtype=np.int64).reshape(2, 4, 2, 5)  # 80 elements, sample outermost
    r = Pcg32(7, 0)
    twin = Pcg32(7, 0)
    y = dropout(x, 30, r)
    keep = [twin.keep(30) for _ in range(x.size)]  # the scalar draws, one per element in C-order
    want = [trunc_div(int(v) * k * 1428, 1000) for v, k in zip(x.reshape(-1), keep)]
    assert y.reshape(-1).tolist() == want
    assert (r.state, r.inc) == (twin.state, twin.inc)  # advanced by exactly x.size draws


@pytest.mark.parametrize("sem, coins", [("nitrogen", 3), ("reference", 1)])
def test_model_dropout_draws_after_augmentation_and_not_in_evaluation(sem, coins):
    # tiny_cnn_avg: flip only (a coin per sample in nitrogen, per batch in reference), then Dropout(35 %) on the
    # 3 x 3 x 3 output of the second conv (8 -> avgpool 4 -> conv k2 p0 -> 3): 27 draws per sample, bs 3.
    s = spec("tiny_cnn_avg", sem)
    m = Model(s, seed=11)
    twin = Pcg32(0)
    twin.state, twin.inc = m.rng_state
    x, y = batch(s, 1)
    m.train_step(x, y)
    for _ in range(coins):
        twin.coin()
    for _ in range(3 * 27):
        twin.uniform_int(0, 99)
    assert m.rng_state == (twin.state, twin.inc)
    m.predict(x)
    m.evaluate(x, y)
    assert m.rng_state == (twin.state, twin.inc)  # evaluation draws nothing: dropout is the identity


# ------------------------------------------------------------------------------------------------------------------
# Integer conv2d (docs/semantics.md#integer-linear-and-conv) by hand and against a Python-int oracle
# ------------------------------------------------------------------------------------------------------------------

CONV_X = [[1, -2, 3], [0, 4, -1], [2, 1, -3]]
CONV_W = [[1, 2], [-1, 3]]


@pytest.mark.parametrize("sem", [NG, REF])
def test_conv_forward_and_weight_gradient_by_hand(sem):
    x = arr([[CONV_X]])
    w = arr([[CONV_W]])
    # padding 1 -> 4 x 4: acc[h][w] = xp[h][w] + 2 xp[h][w+1] - xp[h+1][w] + 3 xp[h+1][w+1] (no kernel flip)
    acc = int_conv2d(x, w, 1, sem)
    assert acc.tolist() == [[[[3, -7, 11, -3], [2, 9, -3, 4], [6, 9, -8, 2], [4, 4, -5, -3]]]]
    dz = arr([[[[1, 0, 0, 2], [0, -1, 0, 0], [0, 0, 0, 0], [3, 0, 0, -1]]]])
    # G[a][b] = xp[a][b] + 2 xp[a][3+b] - xp[1+a][1+b] + 3 xp[3+a][b] - xp[3+a][3+b]
    g = int_conv2d_weight_grad(dz, x, 2, 1, sem)
    assert g.tolist() == [[[[2, 8], [6, -3]]]]
    # without padding: 2 x 2 output, acc = [[1+(-4)-0+12, -2+6-4-3], [0+8-2+3, 4-2-1-9]]
    assert int_conv2d(x, w, 0, sem).tolist() == [[[[9, -3], [9, -8]]]]


def test_conv_reference_wraps_nitrogen_exact():
    x = arr([[[[127]], [[127]]]])  # N=1, C=2, 1 x 1
    w = arr([[[[1 << 30]], [[1 << 30]]]])  # F=1, k=1
    # 127 * 2^31 = 2^31 (mod 2^32), which wrap32 maps to -2^31
    assert int_conv2d(x, w, 0, REF).tolist() == [[[[-(1 << 31)]]]]
    assert int_conv2d(x, w, 0, NG).tolist() == [[[[127 << 31]]]]
    dz = arr([[[[1 << 30]]]])
    xg = arr([[[[4]], [[-4]]]])
    assert int_conv2d_weight_grad(dz, xg, 1, 0, REF).reshape(-1).tolist() == [0, 0]  # +-2^32 = 0 (mod 2^32)
    assert int_conv2d_weight_grad(dz, xg, 1, 0, NG).reshape(-1).tolist() == [1 << 32, -(1 << 32)]


def conv_oracle(x, w, p):
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    xs, ws = x.tolist(), w.tolist()

    def xp(i, ch, r, q):
        r, q = r - p, q - p
        return xs[i][ch][r][q] if 0 <= r < h and 0 <= q < wd else 0
    ho, wo = h + 2 * p - k + 1, wd + 2 * p - k + 1
    acc = [[[[sum(ws[o][ch][a][b] * xp(i, ch, r + a, q + b) for ch in range(c) for a in range(k) for b in range(k))
              for q in range(wo)] for r in range(ho)] for o in range(f)] for i in range(n)]
    return acc, xp


def grad_oracle(dz, x, k, p):
    n, f, ho, wo = dz.shape
    c = x.shape[1]
    _, xp = conv_oracle(x, np.zeros((1, c, k, k), dtype=np.int64), p)
    d = dz.tolist()
    return [[[[sum(d[i][o][r][q] * xp(i, ch, r + a, q + b) for i in range(n) for r in range(ho) for q in range(wo))
               for b in range(k)] for a in range(k)] for ch in range(c)] for o in range(f)]


def wrap32(v: int) -> int:
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


@pytest.mark.parametrize("min_chunk", [256, 1])
@pytest.mark.parametrize("wmax, dmax", [(64, 300), (40000, 50000), (1 << 23, 1 << 23), (1 << 29, 1 << 28)])
def test_conv_matches_python_int_oracle(monkeypatch, min_chunk, wmax, dmax):
    # Large values take the chunked int32 and the int64 paths of nitrogen (min_chunk 1 forces chunks of a few terms)
    # and make reference wrap; the oracle sums exactly in Python ints.
    monkeypatch.setattr(ref, "MIN_INT32_CHUNK", min_chunk)
    r = Pcg32(3, 9)
    x = r.uniform_ints(-128, 127, 4 * 3 * 12 * 12).reshape(4, 3, 12, 12)
    w = r.uniform_ints(-wmax, wmax, 2 * 3 * 3 * 3).reshape(2, 3, 3, 3)
    dz = r.uniform_ints(-dmax, dmax, 4 * 2 * 12 * 12).reshape(4, 2, 12, 12)
    acc, _ = conv_oracle(x, w, 1)
    grad = grad_oracle(dz, x, 3, 1)
    assert int_conv2d(x, w, 1, NG).tolist() == acc
    assert int_conv2d_weight_grad(dz, x, 3, 1, NG).tolist() == grad
    assert int_conv2d(x, w, 1, REF).tolist() == [[[[wrap32(v) for v in row] for row in ch] for ch in s] for s in acc]
    assert int_conv2d_weight_grad(dz, x, 3, 1, REF).tolist() == \
        [[[[wrap32(v) for v in row] for row in ch] for ch in f] for f in grad]


def test_conv_shape_errors():
    with pytest.raises(ValueError):
        int_conv2d(np.zeros((1, 2, 3, 3), dtype=np.int64), np.zeros((1, 3, 3, 3), dtype=np.int64), 1, NG)
    with pytest.raises(ValueError):
        int_conv2d(np.zeros((1, 1, 2, 2), dtype=np.int64), np.zeros((1, 1, 3, 3), dtype=np.int64), 0, NG)
    with pytest.raises(ValueError):
        int_conv2d_weight_grad(np.zeros((1, 1, 3, 3), dtype=np.int64), np.zeros((1, 1, 3, 3), dtype=np.int64),
                               3, 0, NG)


# ------------------------------------------------------------------------------------------------------------------
# Construction (docs/semantics.md#learning-pools, #initialisation; VGG8B on 28x28)
# ------------------------------------------------------------------------------------------------------------------

# name, shape, SF, B, amp, decay_inv of the paper's VGG8B on MNIST (decay 30 000 / 3 000), typed here
VGG8B_MNIST = [
    ("blocks.0.forward.weight", (128, 1, 3, 3), 2304, 64, 640, 30000),
    ("blocks.0.learning.weight", (10, 3584), 917504, 5, 1, 3000),
    ("blocks.1.forward.weight", (256, 128, 3, 3), 294912, 9, 640, 30000),
    ("blocks.1.learning.weight", (10, 4096), 1048576, 4, 1, 3000),
    ("blocks.2.forward.weight", (256, 256, 3, 3), 589824, 6, 640, 30000),
    ("blocks.2.learning.weight", (10, 4096), 1048576, 4, 1, 3000),
    ("blocks.3.forward.weight", (512, 256, 3, 3), 589824, 6, 640, 30000),
    ("blocks.3.learning.weight", (10, 4096), 1048576, 4, 1, 3000),
    ("blocks.4.forward.weight", (512, 512, 3, 3), 1179648, 4, 640, 30000),
    ("blocks.4.learning.weight", (10, 4096), 1048576, 4, 1, 3000),
    ("blocks.5.forward.weight", (512, 512, 3, 3), 1179648, 4, 640, 30000),
    ("blocks.5.learning.weight", (10, 3072), 786432, 5, 1, 3000),
    ("blocks.6.forward.weight", (1024, 512), 131072, 13, 640, 30000),
    ("blocks.6.learning.weight", (10, 1024), 262144, 9, 1, 3000),
    ("output.weight", (10, 1024), 262144, 9, 1, 3000),
]


@pytest.mark.parametrize("sem", ["nitrogen", "reference"])
def test_vgg8b_mnist_construction(sem):
    m = Model(spec("vgg8b_mnist", sem), seed=42)
    got = [(i.name, i.shape, i.sf, i.bound, i.amp, i.decay_inv) for i in m.layer_info]
    assert got == VGG8B_MNIST
    params = m.params
    assert list(params) == [row[0] for row in VGG8B_MNIST]  # construction order = the draw order
    for name, shape, _, bound, _, _ in VGG8B_MNIST:
        assert params[name].shape == shape
        assert -bound <= int(params[name].min()) and int(params[name].max()) <= bound
    # seed(42, 0), eight draws of uniform_int(-64, 64) (docs/semantics.md#random-numbers); conv 0 (B = 64) is drawn
    # first, in C-order
    assert params["blocks.0.forward.weight"].reshape(-1)[:8].tolist() == [-46, 31, 44, 10, 8, -60, 19, 49]
    assert m.local_steps == ((1,) * 7 if sem == "nitrogen" else (1,) * 6 + (2,))


def test_conv_amp_adjust_nitrogen_only():
    s = spec("vgg8b_mnist")
    adjusted = replace(s, train=replace(s.train, conv_amp_adjust=True))
    # amp_model * (H_o^2 // (kh*kw)) per conv block; the linear block keeps amp_model
    assert [i.amp for i in Model(adjusted).layer_info if "forward" in i.name] == \
        [15360, 7680, 7680, 3840, 3840, 2560, 640]
    # reference never applies it (the spec check rejects the option; the interpreter ignores it if bypassed)
    bypass = replace(adjusted, semantics=REF)
    assert [i.amp for i in Model(bypass).layer_info if "forward" in i.name] == [640] * 7
    # tiny_cnn_adjust (amp_model 320): 7 x 7 outputs with kernels (4, 2) and (4, 4): 49 // 8 = 6, 49 // 16 = 3
    amps = [i.amp for i in Model(spec("tiny_cnn_adjust")).layer_info if "forward" in i.name]
    assert amps == [320 * 6, 320 * 3, 320]


def test_reference_rejects_a_padded_avg_learning_pool():
    s = spec("tiny_cnn_adjust")  # block 0: avg learning pool (4, 2) with padding (2, 1)
    with pytest.raises(ValueError, match="avg learning pool"):
        Model(replace(s, semantics=REF, train=replace(s.train, conv_amp_adjust=False)))


def test_tiny_cnn_shapes_and_names():
    m = Model(spec("tiny_cnn"))
    # conv 3 at 9 x 9 (pool (8, 8) -> D 12), maxpool 2 -> 4 x 4, conv 4 k3 p0 -> 2 x 2 (D = 16 <= P: no pool),
    # dropout, linear 16 -> 6, output 6 -> 4. Blocks are numbered among blocks only: the linear block is blocks.2.
    assert [(i.name, i.shape, i.sf) for i in m.layer_info] == [
        ("blocks.0.forward.weight", (3, 1, 3, 3), 2304), ("blocks.0.learning.weight", (4, 12), 3072),
        ("blocks.1.forward.weight", (4, 3, 3, 3), 6912), ("blocks.1.learning.weight", (4, 16), 4096),
        ("blocks.2.forward.weight", (6, 16), 4096), ("blocks.2.learning.weight", (4, 6), 1536),
        ("output.weight", (4, 6), 1536)]


def test_output_gain_follows_the_last_block_even_a_conv():
    text = """name: t
input: [1, 4, 4]
num_classes: 3
layers:
  - {kind: conv, out_channels: 2, kernel: 3, padding: 1, slope_inv: 16}
train: {batch_size: 2}
"""
    s = nitrogen.parse_spec_text(text, "t.yaml")
    # F = 2 * 4 * 4 = 32, int_sqrt(32) = 5: gain 1411 -> 1411*128*1732 // 5e6 = 62; gain 1372 -> 60
    out = Model(s).layer_info[-1]
    assert (out.name, out.gain_milli, out.bound) == ("output.weight", 1411, 62)
    assert Model(with_semantics(s, "reference")).layer_info[-1].bound == 60


def test_set_params_takes_the_4d_conv_shape():
    m = Model(spec("tiny_cnn"))
    p = m.params
    p["blocks.0.forward.weight"] = np.full((3, 1, 3, 3), -7, dtype=np.int16)
    m.set_params(p)
    assert m.params["blocks.0.forward.weight"].tolist() == [[[[-7] * 3] * 3]] * 3
    p["blocks.0.forward.weight"] = np.zeros((3, 9), dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        m.set_params(p)


# ------------------------------------------------------------------------------------------------------------------
# Training (docs/semantics.md#the-training-step)
# ------------------------------------------------------------------------------------------------------------------

def train(s, steps: int, seed: int = 0) -> tuple[Model, dict[str, np.ndarray]]:
    m = Model(s, seed=seed)
    before = m.params
    for k in range(steps):
        m.train_step(*batch(s, 100 + k))
    return m, before


def changed(m: Model, before: dict[str, np.ndarray]) -> set[str]:
    return {n for n, w in m.params.items() if not np.array_equal(w, before[n])}


@pytest.mark.parametrize("name, sem", [("tiny_cnn", "nitrogen"), ("tiny_cnn_avg", "nitrogen"),
                                       ("tiny_cnn_avg", "reference"), ("tiny_cnn_ref", "nitrogen"),
                                       ("tiny_cnn_adjust", "nitrogen")])
def test_tiny_cnns_train_and_every_parameter_moves(name, sem):
    m, before = train(spec(name, sem), 5)
    assert changed(m, before) == set(before)
    assert m.steps == 5


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_cnn_ref"])
def test_reference_padding_freezes_a_first_conv_block_at_init(name):
    # At initialisation |acc| / SF <= 9*128*64 / 2304 = 32, so z <= 32 and h = P(z) - 36 <= -4 < 0. Every window of
    # block 0's learning pool ((8, 8) pad (4, 4) on 9 x 9; (4, 2) pad (2, 1) on 5 x 5) holds a padding cell, whose 0
    # wins in reference mode (docs/semantics.md#padding-that-wins-a-max-pool): p = 0, G_l = 0, every pool gradient
    # is discarded, and decay is 0 for |W| <= 64.
    # So block 0 never moves, while every later parameter trains.
    m, before = train(spec(name, "reference"), 5)
    frozen = {"blocks.0.forward.weight", "blocks.0.learning.weight"}
    assert changed(m, before) == set(before) - frozen


def test_local_steps_per_mode():
    assert Model(spec("tiny_cnn_ref", "nitrogen")).local_steps == (1, 1, 1)
    assert Model(spec("tiny_cnn_ref", "reference")).local_steps == (1, 2, 2)  # two local steps: linear blocks of a CNN
    assert Model(spec("tiny_cnn", "reference")).local_steps == (1, 1, 2)
    assert Model(spec("tiny_cnn_avg", "reference")).local_steps == (1, 1)


@pytest.mark.parametrize("name, sem", [("tiny_cnn", "nitrogen"), ("tiny_cnn_ref", "reference"),
                                       ("tiny_cnn_avg", "reference"), ("tiny_cnn_adjust", "nitrogen")])
def test_fused_schedule_gives_identical_results(name, sem):
    """Fused schedule: each block's r_b local steps right after its forward equal the published order; dropout
    draws stay in forward order. r_b = 2 (reference linear blocks of a CNN) is spelled out here."""
    s = spec(name, sem)
    a, b = Model(s, seed=3), Model(s, seed=3)
    aug = s.train.augment
    for k in range(3):
        x, y = batch(s, 200 + k)
        stats = a.train_step(x, y)
        onehot = b._onehot(y.astype(np.int64))
        act = ref.augment(x, b.rng, aug.crop_pad, aug.flip, sem).astype(np.int64)
        first_logits = []
        for item in b._items:
            kind = ref.REFERENCE[item.kind]
            saved: dict[str, np.ndarray] = {}
            act = kind.forward(b, item.state, act, saved)
            if kind.local_step is not None:
                steps = 2 if (sem == "reference" and item.kind == "linear") else 1
                for r in range(steps):
                    logits = kind.local_step(b, item.state, saved, onehot)
                    if r == 0:
                        first_logits.append(logits)
        x_out, logits = ref.ref_output_forward(b, b._out, act)
        ref.ref_output_update(b, b._out, x_out, logits, onehot)
        for name_, w in a.params.items():
            assert w.tolist() == b.params[name_].tolist(), (k, name_)
        assert a.rng_state == b.rng_state
        # stats come from the first local step of every block, in block order
        assert stats.local_loss == tuple(int(((lg - onehot) ** 2).sum()) for lg in first_logits)


def test_range_names_of_a_cnn_step():
    s = spec("tiny_cnn")
    m = Model(s)
    seen: list[str] = []
    original = m._checked

    def record(name, a):
        seen.append(name)
        return original(name, a)
    m._checked = record  # type: ignore[method-assign]
    m.train_step(*batch(s, 1))
    per_block = ["_l_acc", "_l_logits", "_l_delta", "_l_dx", "_l_grad", "_l_g", "_l_wnew", "_l_w", "_dz", "_grad",
                 "_g", "_wnew", "_w"]
    want = {"x", "b0_acc", "b0_z", "b0_h", "b0_lp", "pool1_y", "b1_acc", "b1_z", "b1_h", "drop3_y", "b2_acc",
            "b2_z", "b2_h", "out_acc", "out_logits", "out_delta", "out_grad", "out_g", "out_wnew", "out_w"}
    want |= {f"b{j}{suffix}" for j in range(3) for suffix in per_block}
    assert set(seen) == want  # b1 has no learning pool (D = 16 <= P), so no b1_lp
    # and the ranges are enforced under those names
    m2 = Model(s, ranges={"pool1_y": (-200, -100)})
    with pytest.raises(ref.RangeViolation, match="pool1_y"):
        m2.train_step(*batch(s, 1))


def test_vgg8b_width8_step_and_prediction():
    s = spec("vgg8b_fmnist_w8")
    m = Model(s, seed=0)
    x, y = batch(s, 9)
    before = m.params
    stats = m.train_step(x, y)
    assert len(stats.local_loss) == 7 and len(stats.local_correct) == 7
    assert 0 <= stats.correct <= 64
    assert changed(m, before)  # something trained
    p = m.predict(x[:5])
    assert p.shape == (5, 10) and p.dtype == np.int8
