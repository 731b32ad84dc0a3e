"""Unit tests of the NumPy reference interpreter (`nitrogen/reference.py`).

Expected values are worked out by hand from docs/semantics.md, not copied from running the code. Test data is
integer-only and comes from the module's own PCG32 where it has to be random.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import nitrogen
from nitrogen import reference as ref
from nitrogen.reference import (
    eval_sample_count,
    Model, Pcg32, RangeViolation, StepStats, augment, clip, int_linear, int_linear_input_grad,
    int_linear_weight_grad, int_sqrt, kaiming_bound, loss_grad, nitro_relu, nitro_relu_backward, nitro_scale,
    saturate, sgd_terms, sgd_update, tdiv, wrap,
)
from nitrogen.spec import Semantics

NG, REF = Semantics.NITROGEN, Semantics.REFERENCE
I31 = (1 << 31) - 1


def make_spec(widths=(3, 2), *, inp=(1, 2, 2), classes=3, sem="nitrogen", bs=4, lr_inv=512, amp=64,
              fwd_decay=0, sub_decay=0, crop=0, flip=False, slopes=None, bits=16, target=32):
    if not widths:  # the spec language requires a block; the reference still handles an output-only network
        return replace(make_spec((1,), inp=inp, classes=classes, sem=sem, bs=bs, lr_inv=lr_inv, amp=amp,
                                 fwd_decay=fwd_decay, sub_decay=sub_decay, crop=crop, flip=flip, bits=bits,
                                 target=target), layers=())
    slopes = slopes or [4] * len(widths)
    layers = "\n".join(f"  - {{kind: linear, out_features: {w}, slope_inv: {s}}}" for w, s in zip(widths, slopes))
    text = f"""name: t
input: [{inp[0]}, {inp[1]}, {inp[2]}]
num_classes: {classes}
target_value: {target}
semantics: {sem}
{f"weight_bits: {bits}" if sem == "nitrogen" else ""}
layers:
{layers}
train:
  batch_size: {bs}
  lr_inv: {lr_inv}
  amp_model: {amp}
  fwd_decay_inv: {fwd_decay}
  subnet_decay_inv: {sub_decay}
  augment: {{crop_pad: {crop}, flip: {str(flip).lower()}}}
"""
    return nitrogen.parse_spec_text(text, "t.yaml")


def trunc_div(a: int, b: int) -> int:
    """Independent oracle for C99 division by b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def ints(seed: int, lo: int, hi: int, shape) -> np.ndarray:
    return Pcg32(seed, 77).uniform_ints(lo, hi, int(np.prod(shape))).reshape(shape)


# ------------------------------------------------------------------------------------------------------------------
# Independence and no-float rules
# ------------------------------------------------------------------------------------------------------------------

REF_PATH = Path(ref.__file__)


def test_reference_imports_only_numpy_stdlib_spec_errors():
    tree = ast.parse(REF_PATH.read_text())
    allowed_nitrogen = {"nitrogen.spec", "nitrogen.errors"}
    seen = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            seen.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .spec import ...
                seen.append("nitrogen." + (node.module or ""))
                if node.module is None:
                    seen.extend("nitrogen." + alias.name for alias in node.names)
            else:
                seen.append(node.module or "")
    assert seen, "no imports found?"
    for name in seen:
        top = name.split(".")[0]
        if top == "nitrogen":
            assert name in allowed_nitrogen, f"reference.py imports {name}"
        else:
            assert top == "numpy" or top in sys.stdlib_module_names, f"reference.py imports {name}"
        assert top not in ("random",), name
        for banned in ("lower", "ir", "bounds", "emit"):
            assert name != f"nitrogen.{banned}", name


def test_reference_source_has_no_float_path():
    tree = ast.parse(REF_PATH.read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, (ast.Div,)), f"true division at line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.BinOp):
            assert not isinstance(node.op, ast.Div), f"'/' at line {node.lineno}"
        if isinstance(node, ast.AugAssign):
            assert not isinstance(node.op, ast.Div), f"'/=' at line {node.lineno}"
        if isinstance(node, ast.Constant):
            assert not isinstance(node.value, float), f"float literal at line {node.lineno}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("random", "trunc", "float64", "float32", "float16", "floor", "true_divide",
                                     "divide", "sqrt"), f"np.{node.attr} at line {node.lineno}"
        if isinstance(node, ast.Name):
            assert node.id != "float", f"float() at line {node.lineno}"


# ------------------------------------------------------------------------------------------------------------------
# Integer primitives (docs/semantics.md#integer-primitives)
# ------------------------------------------------------------------------------------------------------------------

def test_tdiv_examples():
    assert tdiv(7, 2) == 3
    assert tdiv(-7, 2) == -3
    assert tdiv(-3, 4) == 0
    assert tdiv(-5, 4) == -1
    assert tdiv(0, 5) == 0
    assert tdiv(-(1 << 62), 3) == -1537228672809129301
    got = tdiv(np.array([7, -7, -3, -5, 5, -8, 8], dtype=np.int8), 4)
    assert got.dtype == np.int64
    assert got.tolist() == [1, -1, 0, -1, 1, -2, 2]
    assert tdiv(np.array([-2 ** 31]), I31).tolist() == [-1]
    with pytest.raises(ValueError):
        tdiv(3, 0)


def test_tdiv_matches_oracle_on_a_grid():
    a = np.arange(-300, 301)
    for b in (1, 2, 3, 4, 7, 256, 512, 1000):
        assert tdiv(a, b).tolist() == [trunc_div(int(v), b) for v in a]


def test_int_sqrt():
    for n, r in [(0, 0), (1, 1), (2, 1), (3, 1), (4, 2), (9, 3), (27, 5), (784, 28), (1152, 33), (3000, 54),
                 (4608, 67), (1 << 40, 1 << 20), ((1 << 40) - 1, (1 << 20) - 1)]:
        assert int_sqrt(n) == r, n
    import math
    assert all(int_sqrt(n) == math.isqrt(n) for n in range(5000))


def test_clip_wrap_saturate():
    assert clip(200, -127, 127) == 127 and clip(-200, -127, 127) == -127 and clip(5, -127, 127) == 5
    assert wrap(127, 8) == 127 and wrap(128, 8) == -128 and wrap(-129, 8) == 127 and wrap(-132, 8) == 124
    assert wrap(-128, 8) == -128 and wrap(255, 8) == -1 and wrap(256, 8) == 0
    assert wrap(1 << 31, 32) == -(1 << 31) and wrap((1 << 32) + 5, 32) == 5 and wrap(-(1 << 31) - 1, 32) == I31
    assert wrap(np.array([128, -129, 1 << 31, -(1 << 31) - 1]), 8).tolist() == [-128, 127, 0, -1]
    assert wrap(np.array([1 << 31, -(1 << 31) - 1, 127 << 31]), 32).tolist() == [-(1 << 31), I31, -(1 << 31)]
    assert saturate(40000, 16) == 32767 and saturate(-40000, 16) == -32767 and saturate(-32768, 16) == -32767
    assert saturate(np.array([300, -300, 5]), 9).tolist() == [255, -255, 5]


# ------------------------------------------------------------------------------------------------------------------
# PRNG (docs/semantics.md#random-numbers)
# ------------------------------------------------------------------------------------------------------------------

def test_pcg32_known_answers():
    r = Pcg32(42, 54)
    assert [r.next_u32() for _ in range(3)] == [0xA15C02B7, 0x7B47F409, 0xBA1D3330]
    r = Pcg32()
    r.seed(42, 0)
    assert [r.uniform_int(-64, 64) for _ in range(8)] == [-46, 31, 44, 10, 8, -60, 19, 49]


def test_pcg32_seed_steps():
    # seed(s, q): state = 0; inc = 2q+1; step; state += s; step.
    mult, m64 = 6364136223846793005, (1 << 64) - 1
    r = Pcg32(42, 54)
    inc = 109
    s = (0 * mult + inc) & m64
    s = (s + 42) & m64
    s = (s * mult + inc) & m64
    assert (r.state, r.inc) == (s, inc)


def test_uniform_ints_equals_scalar_draws():
    # includes a range with heavy rejection: n = 2^31 + 1 rejects u < 2^31 - 1
    for lo, hi, count in [(-64, 64, 70_000), (0, 1 << 31, 3000), (-3, 3, 100), (0, 255, 1000), (5, 5, 80)]:
        a, b = Pcg32(7, 3), Pcg32(7, 3)
        want = [a.uniform_int(lo, hi) for _ in range(count)]
        got = b.uniform_ints(lo, hi, count)
        assert got.dtype == np.int64 and got.tolist() == want
        assert (a.state, a.inc) == (b.state, b.inc)


def test_coin_keep_permutation():
    a, b = Pcg32(1, 0), Pcg32(1, 0)
    coins = [a.coin() for _ in range(50)]
    assert coins == [b.uniform_int(0, 1) for _ in range(50)] and set(coins) == {0, 1}
    assert [a.keep(10) for _ in range(20)] == [int(b.uniform_int(0, 99) >= 10) for _ in range(20)]
    p = a.permutation(10)
    want = list(range(10))
    for i in range(9, 0, -1):
        j = b.uniform_int(0, i)
        want[i], want[j] = want[j], want[i]
    assert p == want and sorted(p) == list(range(10))
    assert Pcg32(3, 0).permutation(1) == [0] and Pcg32(3, 0).permutation(0) == []


# ------------------------------------------------------------------------------------------------------------------
# Initialisation (docs/semantics.md#initialisation)
# ------------------------------------------------------------------------------------------------------------------

KAIMING_TABLE = {9: 64, 27: 60, 50: 43, 100: 30, 200: 21, 512: 13, 784: 10, 1024: 9, 1152: 9, 2048: 6, 2304: 6,
                 3000: 5, 3072: 5, 3584: 5, 4096: 4, 4608: 4}


def test_kaiming_bound_table():
    for fan_in, b in KAIMING_TABLE.items():
        assert kaiming_bound(fan_in, 1372) == b, fan_in
    # 1342*128*1732 = 297 516 032; int_sqrt(784) = 28
    assert kaiming_bound(784, 1342) == 10
    assert kaiming_bound(100, 1342) == 29
    assert kaiming_bound(50, 1412) == 44


def test_layer_constants_mlp1_and_mlp3():
    m = Model(nitrogen.load_spec(Path(__file__).parent.parent / "specs" / "mlp1_mnist.yaml"))
    got = [(i.name, i.sf, i.bound, i.amp, i.decay_inv) for i in m.layer_info]
    assert got == [("blocks.0.forward.weight", 200704, 10, 640, 12000),
                   ("blocks.0.learning.weight", 25600, 30, 1, 3000),
                   ("blocks.1.forward.weight", 25600, 30, 640, 12000),
                   ("blocks.1.learning.weight", 12800, 43, 1, 3000),
                   ("output.weight", 12800, 43, 1, 3000)]
    assert {k: v.shape for k, v in m.params.items()} == {
        "blocks.0.forward.weight": (100, 784), "blocks.0.learning.weight": (10, 100),
        "blocks.1.forward.weight": (50, 100), "blocks.1.learning.weight": (10, 50), "output.weight": (10, 50)}
    m3 = Model(make_spec((1024, 1024, 1024), inp=(1, 28, 28), classes=10, bs=64))
    assert [(i.sf, i.bound) for i in m3.layer_info] == [(200704, 10), (262144, 9), (262144, 9), (262144, 9),
                                                       (262144, 9), (262144, 9), (262144, 9)]


def test_output_without_blocks_uses_flattened_input():
    m = Model(make_spec((), inp=(2, 3, 3), classes=4))
    (info,) = m.layer_info
    assert (info.name, info.shape, info.sf, info.bound) == ("output.weight", (4, 18), 256 * 18, 64)


@pytest.mark.parametrize("sem, bounds", [("nitrogen", [29, 42, 44, 44, 44]), ("reference", [30, 43, 43, 43, 43])])
def test_kaiming_gain_per_mode_and_draw_order(sem, bounds):
    # block 0: slope 3 (gain 1342), fan_in 100 then 50; block 1: slope 20 (gain 1412), fan_in 50; output: last slope
    spec = make_spec((50, 50), inp=(1, 10, 10), classes=5, slopes=[3, 20], sem=sem)
    m = Model(spec, seed=9)
    assert [i.bound for i in m.layer_info] == bounds
    r = Pcg32(9, 0)
    params = m.params
    assert list(params) == ["blocks.0.forward.weight", "blocks.0.learning.weight", "blocks.1.forward.weight",
                            "blocks.1.learning.weight", "output.weight"]
    for (name, w), b in zip(params.items(), bounds):
        want = [r.uniform_int(-b, b) for _ in range(w.size)]
        assert w.dtype == np.int64 and w.reshape(-1).tolist() == want, name
        assert int(np.abs(w).max()) == b  # enough draws to hit the bound
    assert m.rng_state == (r.state, r.inc)


def test_init_first_weights_known_answer():
    # fan_in 9 -> B = 64; seed 42 -> the eight uniform_int(-64, 64) draws of docs/semantics.md#random-numbers,
    # in C-order
    m = Model(make_spec((8,), inp=(1, 3, 3), classes=2), seed=42)
    assert m.params["blocks.0.forward.weight"].reshape(-1)[:8].tolist() == [-46, 31, 44, 10, 8, -60, 19, 49]


# ------------------------------------------------------------------------------------------------------------------
# Layers, losses and IntegerSGD (docs/semantics.md#layers, #losses-and-gradients, #integersgd)
# ------------------------------------------------------------------------------------------------------------------

def test_int_linear_reference_wraps_nitrogen_exact():
    x = np.array([[127, 127]])
    w = np.array([[1 << 30, 1 << 30]])
    assert int_linear(x, w, REF).tolist() == [[-(1 << 31)]]  # 127*2^31 = 2^31 (mod 2^32)
    assert int_linear(x, w, NG).tolist() == [[127 << 31]]
    assert nitro_scale(int_linear(x, w, REF), 512).tolist() == [[-127]]
    assert nitro_scale(int_linear(x, w, NG), 512).tolist() == [[127]]


@pytest.mark.parametrize("wmax", [64, 32767, I31])
def test_int_linear_family_matches_python_ints(wmax):
    n, i, o = 5, 7, 4
    x = ints(1, -128, 127, (n, i))
    w = ints(2, -wmax, wmax, (o, i))
    d = ints(3, -159, 127, (n, o))
    xs, ws, ds = x.tolist(), w.tolist(), d.tolist()
    fwd = [[sum(xs[a][k] * ws[b][k] for k in range(i)) for b in range(o)] for a in range(n)]
    dx = [[sum(ds[a][b] * ws[b][k] for b in range(o)) for k in range(i)] for a in range(n)]
    gw = [[sum(ds[a][b] * xs[a][k] for a in range(n)) for k in range(i)] for b in range(o)]
    for sem in (NG, REF):
        f = (lambda v: v) if sem is NG else (lambda v: ((v + (1 << 31)) % (1 << 32)) - (1 << 31))
        assert int_linear(x, w, sem).tolist() == [[f(v) for v in row] for row in fwd]
        assert int_linear_input_grad(d, w, sem).tolist() == [[f(v) for v in row] for row in dx]
        assert int_linear_weight_grad(d, x, sem).tolist() == [[f(v) for v in row] for row in gw]


def test_nitrogen_refuses_inexact_sums():
    with pytest.raises(OverflowError):
        int_linear(np.array([[1 << 40, 1 << 40]]), np.array([[1 << 30, 1]]), NG)


def test_nitro_scale():
    assert nitro_scale(-257, 256) == -1
    assert nitro_scale(-255, 256) == 0
    assert nitro_scale(255, 256) == 0
    assert nitro_scale(256, 256) == 1
    assert nitro_scale(-256, 256) == -1
    assert nitro_scale(127 * 256 + 255, 256) == 127
    assert nitro_scale(128 * 256, 256) == 127
    assert nitro_scale(-128 * 256, 256) == -127
    assert nitro_scale(10 ** 15, 200704) == 127 and nitro_scale(-(10 ** 15), 200704) == -127
    assert nitro_scale(np.array([-257, -255, 1000, -1000, 1 << 40]), 256).tolist() == [-1, 0, 3, -3, 127]


def test_nitro_relu_forward_examples():
    for z, h in [(-127, -67), (-5, -37), (-4, -37), (-3, -36), (0, -36), (1, -35), (127, 91), (-8, -38),
                 (126, 90)]:
        assert nitro_relu(z, 4) == h, z
    assert nitro_relu(np.array([-127, -5, -4, -3, 0, 1, 127]), 4).tolist() == [-67, -37, -37, -36, -36, -35, 91]


RELU_RANGES = {3: (-73, 96), 4: (-67, 91), 5: (-63, 89), 7: (-58, 87), 8: (-57, 85), 10: (-55, 84), 15: (-52, 83),
               16: (-51, 83), 20: (-51, 82)}


@pytest.mark.parametrize("s", sorted(RELU_RANGES))
def test_nitro_relu_output_range(s):
    h = nitro_relu(np.arange(-127, 128), s)
    assert (int(h.min()), int(h.max())) == RELU_RANGES[s]
    assert np.all(np.diff(h) >= 0)  # monotone


def test_nitro_relu_rejects_unknown_slope():
    with pytest.raises(ValueError):
        nitro_relu(0, 6)


def test_nitro_relu_backward_examples():
    assert nitro_relu_backward(-7, -1, 4, NG) == -1
    assert nitro_relu_backward(7, -1, 4, NG) == 1
    assert nitro_relu_backward(-7, 0, 4, NG) == -7
    assert nitro_relu_backward(5, 126, 4, NG) == 5
    assert nitro_relu_backward(3, -127, 4, REF) == 0
    assert nitro_relu_backward(1000, 127, 4, NG) == 0
    assert nitro_relu_backward(I31, 127, 4, NG) == 0
    assert nitro_relu_backward(I31, 127, 4, REF) == 1
    assert nitro_relu_backward(-(1 << 31), 127, 4, REF) == -1
    assert nitro_relu_backward(-I31, 127, 4, REF) == -1
    assert nitro_relu_backward(I31 - 1, 127, 4, REF) == 0
    assert nitro_relu_backward(-(I31 - 1), 127, 4, REF) == 0
    assert nitro_relu_backward(-1000, 127, 4, REF) == 0


@pytest.mark.parametrize("sem", [NG, REF])
@pytest.mark.parametrize("s", [3, 4, 20])
def test_nitro_relu_backward_whole_range(sem, s):
    z = np.arange(-127, 128)
    for d in (-(1 << 31), -I31, -(I31 - 1), -1000, -5, -4, -3, -1, 0, 1, 3, 4, 5, 1000, I31 - 1, I31):
        got = nitro_relu_backward(np.full(z.shape, d), z, s, sem).tolist()
        want = []
        for zz in z.tolist():
            if zz == 127:
                want.append(trunc_div(d, I31) if sem is REF else 0)
            elif zz < 0:
                want.append(trunc_div(d, s))
            else:
                want.append(d)
        assert got == want, d


def test_loss_grad_modes():
    # the wrap example of docs/semantics.md#int8-loss-gradient-wrap: ŷ = -100 at the true class, T = 32
    assert loss_grad(-100, 32, REF) == 124
    assert loss_grad(-100, 32, NG) == -132
    assert loss_grad(-96, 32, REF) == -128 and loss_grad(-96, 32, NG) == -128
    assert loss_grad(-97, 32, REF) == 127 and loss_grad(-97, 32, NG) == -129
    assert loss_grad(-127, 32, REF) == 97 and loss_grad(-127, 32, NG) == -159
    assert loss_grad(127, 0, REF) == 127 and loss_grad(-127, 0, REF) == -127
    logits = np.array([[-100, 5, 127], [3, -127, 0]])
    onehot = np.array([[32, 0, 0], [0, 32, 0]])
    assert loss_grad(logits, onehot, REF).tolist() == [[124, 5, 127], [3, 97, 0]]
    assert loss_grad(logits, onehot, NG).tolist() == [[-132, 5, 127], [3, -159, 0]]


def test_integer_sgd():
    # no decay
    assert sgd_update(100, 1000, 512, 0, NG, 16) == 99
    assert sgd_update(100, -1000, 512, 0, NG, 16) == 101
    assert sgd_update(100, 511, 512, 0, NG, 16) == 100
    # decay: both truncations toward zero and separate (floor would give g = -1, d = -2)
    assert sgd_terms(-5999, -511, 512, 3000) == (0, -5998)
    assert sgd_update(-5999, -511, 512, 3000, REF, 16) == -5998
    assert sgd_update(12001, -600, 512, 12000, NG, 16) == 12001  # g = -1, d = 1
    assert sgd_update(3000, 0, 512, 3000, NG, 16) == 2999
    assert sgd_update(2999, 0, 512, 3000, NG, 16) == 2999
    assert sgd_update(-3000, 0, 512, 3000, NG, 16) == -2999
    # A above int32: 512*3^8*640 = 2 149 908 480 > |G|
    assert sgd_update(7, -(1 << 31), 512 * 3 ** 8 * 640, 0, REF, 16) == 7
    assert sgd_update(7, -(1 << 31), 1 << 31, 0, REF, 16) == 8
    # nitrogen saturation, symmetric
    assert sgd_update(32767, -5120, 512, 0, NG, 16) == 32767
    assert sgd_update(-32767, 2560, 512, 0, NG, 16) == -32767
    assert sgd_update(100, -512 * 50, 512, 0, NG, 8) == 127
    # reference wrap32 of the new weight
    assert sgd_terms(I31, -512, 512, 0) == (-1, 1 << 31)
    assert sgd_update(I31, -512, 512, 0, REF, 16) == -(1 << 31)
    assert sgd_update(-(1 << 31), 512, 512, 0, REF, 16) == I31
    w = np.array([[100, -5999, 32767, -32767]])
    g = np.array([[1000, -511, -5120, 2560]])
    # g = 1, 0, -10, 5; d = tdiv(W_old, 3000) = 0, -1, 10, -10
    assert sgd_terms(w, g, 512, 3000)[0].tolist() == [[1, 0, -10, 5]]
    assert sgd_terms(w, g, 512, 3000)[1].tolist() == [[99, -5998, 32767, -32762]]
    assert sgd_update(w, g, 512, 3000, NG, 16).tolist() == [[99, -5998, 32767, -32762]]
    assert sgd_update(w, g, 512, 0, NG, 16).tolist() == [[99, -5999, 32767, -32767]]  # saturated: -32772


# ------------------------------------------------------------------------------------------------------------------
# Augmentation (docs/semantics.md#augmentation)
# ------------------------------------------------------------------------------------------------------------------

class ScriptedRng:
    """Stands in for Pcg32: returns scripted draws and records the calls."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.calls = []

    def coin(self):
        self.calls.append("coin")
        return self.draws.pop(0)

    def uniform_int(self, lo, hi):
        self.calls.append(f"u{lo},{hi}")
        return self.draws.pop(0)


IMG0 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
IMG1 = [[-9, 0, 9], [10, 11, 12], [13, 14, 15]]


def batch():
    return np.array([[IMG0], [IMG1]], dtype=np.int8)  # (2, 1, 3, 3)


def test_augment_reference_once_per_batch():
    # crop coin 1, top 0, left 2 (p = 1): out[h][w] = img[h-1][w+1], else v = min of the whole batch (-9);
    # then flip coin 1
    rng = ScriptedRng([1, 0, 2, 1])
    out = augment(batch(), rng, 1, True, REF)
    assert rng.calls == ["coin", "u0,2", "u0,2", "coin"] and not rng.draws
    crop0 = [[-9, -9, -9], [2, 3, -9], [5, 6, -9]]
    crop1 = [[-9, -9, -9], [0, 9, -9], [11, 12, -9]]
    assert out.dtype == np.int8
    assert out[:, 0].tolist() == [[r[::-1] for r in crop0], [r[::-1] for r in crop1]]


def test_augment_nitrogen_per_sample():
    # sample 0: crop coin 1, top 2, left 1 -> out[h][w] = img[h+1][w], v = 1; flip coin 0
    # sample 1: crop coin 0 (no top/left draws); flip coin 1
    rng = ScriptedRng([1, 2, 1, 0, 0, 1])
    out = augment(batch(), rng, 1, True, NG)
    assert rng.calls == ["coin", "u0,2", "u0,2", "coin", "coin", "coin"] and not rng.draws
    assert out[0, 0].tolist() == [[4, 5, 6], [7, 8, 9], [1, 1, 1]]
    assert out[1, 0].tolist() == [r[::-1] for r in IMG1]


def test_augment_no_draws_when_off_and_input_untouched():
    rng = ScriptedRng([])
    x = batch()
    assert augment(x, rng, 0, False, NG).tolist() == x.tolist() and rng.calls == []
    rng = ScriptedRng([0, 0])
    out = augment(x, rng, 2, False, REF)
    assert rng.calls == ["coin"] and out.tolist() == batch().tolist()
    rng = ScriptedRng([1, 3, 3])
    out = augment(x, rng, 2, False, REF)  # p = 2, top = left = 3: out[h][w] = img[h+1][w+1], else -9
    assert out[0, 0].tolist() == [[5, 6, -9], [8, 9, -9], [-9, -9, -9]]
    assert x.tolist() == batch().tolist()


# ------------------------------------------------------------------------------------------------------------------
# One training step by hand
# ------------------------------------------------------------------------------------------------------------------

HAND_PARAMS = {
    "blocks.0.forward.weight": np.array([[600, 0], [-300, 400]]),
    "blocks.0.learning.weight": np.array([[30, 10], [-20, 50]]),
    "output.weight": np.array([[50, -20], [-40, 60]]),
}
HAND_X = np.array([[[[100, -50]]], [[[-128, 127]]]], dtype=np.int8)
HAND_Y = np.array([0, 1], dtype=np.uint8)


def hand_model(sem, ranges=None):
    spec = make_spec((2,), inp=(1, 1, 2), classes=2, sem=sem, bs=2, lr_inv=100, amp=7, fwd_decay=250, sub_decay=45)
    m = Model(spec, seed=3, ranges=ranges)
    m.set_params(HAND_PARAMS)
    return m


@pytest.mark.parametrize("sem", ["nitrogen", "reference"])
def test_hand_computed_training_step(sem):
    # forward: acc = [[60000, -50000], [-76800, 89200]] -> z = [[117, -97], [-127, 127]] -> h = [[81, -60], [-67, 91]]
    # output: acc [[5250, -6840], [-5170, 8140]] -> logits [[10, -13], [-10, 15]], delta [[-22, -13], [-10, -17]]
    #   G = [[-1112, 410], [86, -767]], g = tdiv(G, 100) = [[-11, 4], [0, -7]], d = tdiv(W, 45) = [[1, 0], [0, 1]]
    # learning: logits [[3, -9], [-2, 11]], delta [[-29, -9], [-2, -21]], dp [[-690, -740], [360, -1070]]
    #   G_l = [[-2215, 1558], [678, -1371]], g = [[-22, 15], [6, -13]], d = [[0, 0], [0, 1]]
    # relu backward: dz = [[-690, tdiv(-740, 4) = -185], [tdiv(360, 4) = 90, 0 (z = 127)]]
    #   G_f = [[-80520, 45930], [-18500, 9250]], A = 700, g = [[-115, 65], [-26, 13]],
    #   d = tdiv(W, 250) = [[2, 0], [-1, 1]]
    m = hand_model(sem)
    assert m.predict(HAND_X).tolist() == [[10, -13], [-10, 15]]
    st = m.train_step(HAND_X, HAND_Y)
    assert st == StepStats(loss=1042, correct=2, local_loss=(1367,), local_correct=(2,))
    p = m.params
    assert p["output.weight"].tolist() == [[60, -24], [-40, 66]]
    assert p["blocks.0.learning.weight"].tolist() == [[52, -5], [-26, 62]]
    assert p["blocks.0.forward.weight"].tolist() == [[713, -65], [-273, 386]]
    assert m.steps == 1


def test_hand_step_range_names_and_message():
    ok = {"x": (-128, 127), "b0_acc": (-76800, 89200), "b0_z": (-127, 127), "b0_h": (-67, 91),
          "out_logits": (-13, 15), "out_delta": (-22, -10), "out_grad": (-1112, 410), "out_g": (-11, 4),
          "out_wnew": (-40, 66), "out_w": (-40, 66), "b0_l_logits": (-9, 11), "b0_l_dx": (-1070, 360),
          "b0_l_grad": (-2215, 1558), "b0_dz": (-690, 90), "b0_grad": (-80520, 45930), "b0_g": (-115, 65),
          "b0_wnew": (-273, 713), "b0_w": (-273, 713), "b0_l_w": (-26, 62)}
    hand_model("nitrogen", ok).train_step(HAND_X, HAND_Y)
    with pytest.raises(RangeViolation, match=r"^out_grad\[0\] = -1112 outside proven \[-1111, 410\]$"):
        hand_model("nitrogen", {**ok, "out_grad": (-1111, 410)}).train_step(HAND_X, HAND_Y)
    with pytest.raises(RangeViolation, match=r"^b0_dz\[1\] = -185 outside proven \[-700, -200\]$"):
        hand_model("nitrogen", {**ok, "b0_dz": (-700, -200)}).train_step(HAND_X, HAND_Y)
    assert issubclass(RangeViolation, AssertionError)


def all_range_names(n_blocks):
    names = ["x", "out_acc", "out_logits", "out_delta", "out_grad", "out_w", "out_g", "out_wnew"]
    for i in range(n_blocks):
        names += [f"b{i}_{q}" for q in ("acc", "z", "h", "dz", "grad", "w", "g", "wnew")]
        names += [f"b{i}_l_{q}" for q in ("acc", "logits", "delta", "dx", "grad", "w", "g", "wnew")]
    return names


@pytest.mark.parametrize("sem", ["nitrogen", "reference"])
def test_tiny_mlp_trains_within_generous_ranges(sem):
    spec = make_spec((5, 4), inp=(1, 3, 3), classes=3, sem=sem, bs=4, crop=1, flip=True, fwd_decay=300,
                     sub_decay=100, lr_inv=8, amp=4)
    names = all_range_names(2)
    big = 1 << 62
    m = Model(spec, seed=11, ranges={n: (-big, big) for n in names})
    for k in range(6):
        x = ints(100 + k, -128, 127, (4, 1, 3, 3)).astype(np.int8)
        y = ints(200 + k, 0, 2, (4,)).astype(np.uint8)
        st = m.train_step(x, y)
        assert len(st.local_loss) == len(st.local_correct) == 2 and 0 <= st.correct <= 4
    assert m.steps == 6
    assert m.local_steps == (1, 1)
    # every named tensor is checked: an empty interval for any single name must trip
    for name in names:
        bad = Model(spec, seed=11, ranges={name: (1, 0)})
        with pytest.raises(RangeViolation, match=rf"^{name}\[0\] = "):
            bad.train_step(x, y)


def test_tiny_mlp_learns_a_separable_task():
    spec = make_spec((32, 16), inp=(1, 4, 4), classes=4, bs=16, lr_inv=512, amp=256, fwd_decay=12000,
                     sub_decay=3000)
    gen = Pcg32(5, 9)

    def data(n):
        y = gen.uniform_ints(0, 3, n)
        x = gen.uniform_ints(-40, 40, n * 16).reshape(n, 1, 4, 4)
        for j in range(n):
            q = int(y[j])
            x[j, 0, (q // 2) * 2:(q // 2) * 2 + 2, (q % 2) * 2:(q % 2) * 2 + 2] += 80
        return x.astype(np.int8), y.astype(np.uint8)

    xt, yt = data(256)
    m = Model(spec, seed=1)
    before = m.evaluate(xt, yt)
    for _ in range(300):
        m.train_step(*data(16))
    after = m.evaluate(xt, yt)
    assert before < 100 and after >= 240, (before, after)


@pytest.mark.parametrize("sem", ["nitrogen", "reference"])
def test_fused_schedule_gives_identical_results(sem):
    """Fused schedule (docs/semantics.md#the-training-step): running each block's local step right after its
    forward equals the published order."""
    spec = make_spec((6, 5, 4), inp=(1, 4, 4), classes=3, sem=sem, bs=4, crop=1, flip=True, lr_inv=4, amp=3,
                     fwd_decay=50, sub_decay=20)
    a, b = Model(spec, seed=5), Model(spec, seed=5)
    for k in range(4):
        x = ints(300 + k, -128, 127, (4, 1, 4, 4)).astype(np.int8)
        y = ints(400 + k, 0, 2, (4,)).astype(np.uint8)
        a.train_step(x, y)
        # fused schedule, written with the module's per-kind functions
        onehot = b._onehot(y.astype(np.int64))
        act = ref.augment(x, b.rng, 1, True, sem).astype(np.int64)
        for item in b._items:
            saved = {}
            act = ref.ref_linear_forward(b, item.state, act, saved)
            ref.ref_linear_local_step(b, item.state, saved, onehot)
        x_out, logits = ref.ref_output_forward(b, b._out, act)
        ref.ref_output_update(b, b._out, x_out, logits, onehot)
        for name, w in a.params.items():
            assert w.tolist() == b.params[name].tolist(), (k, name)
        assert a.rng_state == b.rng_state


def test_reference_mode_wraps_inside_a_step():
    # int32 weights of 2^30 make the forward accumulator wrap in reference mode (127*2^31 = 2^31 mod 2^32)
    spec = make_spec((1,), inp=(1, 1, 2), classes=2, sem="reference", bs=1)
    m = Model(spec, ranges={"b0_acc": (-(1 << 31), -(1 << 31)), "b0_z": (-127, -127)})
    p = m.params
    p["blocks.0.forward.weight"] = np.array([[1 << 30, 1 << 30]])
    m.set_params(p)
    m.predict(np.array([[[[127, 127]]]], dtype=np.int8))  # the asserted ranges hold: acc wrapped, z = -127
    ng = Model(make_spec((1,), inp=(1, 1, 2), classes=2, bs=1, bits=32), ranges={"b0_z": (127, 127)})
    p2 = ng.params
    p2["blocks.0.forward.weight"] = np.array([[1 << 30, 1 << 30]])
    ng.set_params(p2)
    ng.predict(np.array([[[[127, 127]]]], dtype=np.int8))


# ------------------------------------------------------------------------------------------------------------------
# Prediction, evaluation, API checks
# ------------------------------------------------------------------------------------------------------------------

def test_predict_and_evaluate_tie_break_lowest_index():
    spec = make_spec((), inp=(1, 1, 2), classes=3, bs=2)
    m = Model(spec)
    m.set_params({"output.weight": np.zeros((3, 2), dtype=np.int64)})
    x = np.array([[[[5, -7]]], [[[127, -128]]], [[[0, 0]]], [[[1, 1]]]], dtype=np.int8)
    assert m.predict(x).tolist() == [[0, 0, 0]] * 4
    assert m.predict(x).dtype == np.int8
    assert m.evaluate(x, np.array([0, 1, 2, 0], dtype=np.uint8)) == 2
    # logits [a, b, b] with b > a: the tie between classes 1 and 2 goes to 1; SF = 512
    m.set_params({"output.weight": np.array([[0, 0], [1024, 0], [1024, 0]])})
    assert m.predict(x[:1]).tolist() == [[0, 10, 10]]
    assert m.evaluate(x[:1], np.array([1])) == 1 and m.evaluate(x[:1], np.array([2])) == 0
    st = m.train_step(x[:2], np.array([1, 2], dtype=np.uint8))  # logits [[0,10,10],[0,127,127]] -> both predict 1
    assert st.correct == 1 and st.local_loss == () and st.local_correct == ()
    # loss from the unwrapped difference: (10-32)^2 + 10^2 + 0 + 127^2 + (127-32)^2
    assert st.loss == 484 + 100 + 127 ** 2 + 95 ** 2


def test_evaluation_sample_count_per_mode():
    # reference evaluates the first floor(N/bs)*bs test samples, nitrogen all of them
    # (docs/semantics.md#evaluation-on-whole-test-batches)
    assert eval_sample_count(10_000, 64, Semantics.REFERENCE) == 9_984
    assert eval_sample_count(10_000, 64, Semantics.NITROGEN) == 10_000
    x = np.zeros((6, 1, 1, 2), dtype=np.int8)
    y = np.zeros(6, dtype=np.uint8)
    # evaluate() itself counts every sample it is given, like the C API
    assert Model(make_spec((), inp=(1, 1, 2), classes=2, bs=4, sem="reference")).evaluate(x, y) == 6


def test_predict_draws_nothing_and_does_not_train():
    m = Model(make_spec(crop=1, flip=True), seed=4)
    before, state = m.params, m.rng_state
    m.predict(ints(1, -128, 127, (7, 1, 2, 2)).astype(np.int8))
    assert m.rng_state == state and all((before[k] == v).all() for k, v in m.params.items())


def test_params_are_copies_and_set_params_validates():
    m = Model(make_spec(bits=8))
    p = m.params
    p["output.weight"][...] = 99
    assert not (m.params["output.weight"] == 99).all()
    with pytest.raises(ValueError):
        m.set_params({k: v for k, v in p.items() if k != "output.weight"})
    with pytest.raises(ValueError):
        m.set_params({**p, "extra": np.zeros(1, dtype=np.int64)})
    with pytest.raises(ValueError):
        m.set_params({**p, "output.weight": np.zeros((2, 2), dtype=np.int64)})
    with pytest.raises(ValueError):
        m.set_params({**p, "output.weight": np.full(p["output.weight"].shape, 128)})
    with pytest.raises(ValueError):
        m.set_params({**p, "output.weight": np.full(p["output.weight"].shape, -128)})
    with pytest.raises(ValueError):
        m.set_params({**p, "output.weight": np.zeros(p["output.weight"].shape, dtype=np.float64)})
    m.set_params({**p, "output.weight": np.full(p["output.weight"].shape, -127, dtype=np.int8)})
    assert (m.params["output.weight"] == -127).all() and m.params["output.weight"].dtype == np.int64
    r = Model(make_spec(sem="reference"))
    q = r.params
    r.set_params({**q, "output.weight": np.full(q["output.weight"].shape, -(1 << 31))})
    with pytest.raises(ValueError):
        r.set_params({**q, "output.weight": np.full(q["output.weight"].shape, 1 << 31)})


def test_train_step_validates_batch_and_labels():
    m = Model(make_spec(bs=4))
    x = np.zeros((4, 1, 2, 2), dtype=np.int8)
    with pytest.raises(ValueError):
        m.train_step(x[:3], np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError):
        m.train_step(x, np.array([0, 1, 2, 3], dtype=np.uint8))  # 3 classes
    with pytest.raises(ValueError):
        m.train_step(np.zeros((4, 1, 3, 2), dtype=np.int8), np.zeros(4, dtype=np.uint8))
    m.train_step(x, np.array([0, 1, 2, 0], dtype=np.uint8))
    assert m.steps == 1


def test_lr_inv_property():
    m = hand_model("nitrogen")
    assert m.lr_inv == 100
    with pytest.raises(ValueError):
        m.lr_inv = 0
    m.lr_inv = 300  # A_out = 300: g = tdiv([[-1112, 410], [86, -767]], 300) = [[-3, 1], [0, -2]]
    m.train_step(HAND_X, HAND_Y)
    assert m.params["output.weight"].tolist() == [[52, -21], [-40, 61]]


def test_seed_argument_drives_rng_not_spec_seed():
    spec = make_spec()
    assert Model(spec, seed=5).rng_state != Model(spec, seed=6).rng_state
    r = Pcg32(5, 0)
    assert Model(spec, seed=5).rng_state[1] == r.inc == 1
