"""NumPy reference interpreter of NITRO-D integer-only training, as docs/semantics.md describes it.

This module computes, directly from a parsed `spec.Model`, what the generated C must compute bit for bit, in
both semantic modes (`nitrogen` and `reference`, docs/semantics.md#semantic-modes). It shares no code with the C path
(`lower`, `ir`, `bounds`, `emit`): it imports only NumPy, the standard library, `nitrogen.spec` and
`nitrogen.errors`, so an agreement between the two is a real cross-check.

Layout:

Section anchors such as `#nitro-relu` below are those of docs/semantics.md.

* integer primitives written once with C99 semantics (#integer-primitives): `tdiv` truncates toward zero (NumPy
  `//` floors), `clip`, `wrap`, `saturate`, `int_sqrt`; the PCG32 generator `Pcg32` (#random-numbers);
* layer arithmetic: `int_linear*` and `int_conv2d*` (#integer-linear-and-conv; the conv is a stride-1
  cross-correlation computed as one channel contraction per kernel offset, never a full-batch im2col),
  `nitro_scale` (#nitro-scaling), `nitro_relu*` (#nitro-relu), pools on a `PoolGeometry` (`max_pool*`,
  `avg_pool*`: #pools), `dropout` (#dropout), `loss_grad` (#losses-and-gradients), `sgd_update` (#integersgd),
  `augment` (#augmentation), `kaiming_bound` (#initialisation), and `learning_pool_search` (#learning-pools),
  written here from the text of docs/semantics.md;
* one `ref_<kind>_*` family per spec layer kind, registered in `REFERENCE`, plus the output layer (`ref_output_*`):
  - MLP family: `linear` blocks (`ref_linear_build/forward/local_step`, #network-structure) and `dropout` items
    (`ref_dropout_*`: draws from rng_train in forward order, identity in evaluation);
  - CNN family: `conv` blocks (`ref_conv_*`, #the-training-step: conv, scaling, ReLU; a local step through the
    learning pool, the learning linear and back to the conv weight gradient), feature-extractor pools
    `maxpool`/`avgpool` (`ref_pool_*`, forward only, kernel = stride, no padding) and dropouts, then linear blocks.
  Activations between items are int64 arrays: (N, C, H, W) in the feature extractor, (N, F) after a linear block
  (which flattens its input, like the output layer). Blocks are numbered among blocks only (`b0`, `b1`, ...;
  `blocks.<j>.*` parameters); pools and dropouts by their layer index (`pool<i>_y`, `drop<i>_y`);
* `Model`: parameters, `train_step` in the published order of #the-training-step (the whole forward first, then the
  output update, then every block's local step(s)), `predict`, `evaluate`.

No floating point is used anywhere. Every tensor is an int64 array; `reference` mode applies its wraps
explicitly, and `nitrogen` values are exact (int64 products and sums, proven < 2^63 by the bounds pass and
re-checked cheaply before each matrix product).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable, Mapping

import numpy as np

from nitrogen.spec import RELU_TABLE, AvgPool, ConvBlock, Dropout, LinearBlock, MaxPool, Semantics
from nitrogen.spec import Model as SpecModel

__all__ = [
    "RangeViolation", "StepStats", "LayerInfo", "Model", "Pcg32", "REFERENCE",
    "tdiv", "int_sqrt", "clip", "wrap", "saturate", "kaiming_bound", "nitro_scale", "nitro_relu",
    "nitro_relu_backward", "loss_grad", "sgd_terms", "sgd_update", "augment",
    "int_linear", "int_linear_input_grad", "int_linear_weight_grad", "int_conv2d", "int_conv2d_weight_grad",
    "PoolGeometry", "learning_pool_search", "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward",
    "dropout_factor", "dropout",
]

Int = Any  # a Python int, a NumPy integer or an integer ndarray
M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MAX = (1 << 63) - 1
# Reference-mode NITRO-ReLU gradient divisor at z = 127 (docs/semantics.md#relu-gradient-at-127).
RELU_SATURATED_DIV = (1 << 31) - 1


class RangeViolation(AssertionError):
    """A reference tensor left the interval that the bounds analysis proved for it."""


# ---------------------------------------------------------------------------------------------------------------
# Integer primitives (docs/semantics.md#integer-primitives)
# ---------------------------------------------------------------------------------------------------------------

def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _i64(v: Any) -> np.ndarray:
    """`v` as an int64 array; refuses non-integer data so that no float can sneak in."""
    a = np.asarray(v)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "b"):
        raise TypeError(f"integer data expected, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > INT64_MAX:
        raise OverflowError("uint64 value does not fit int64")
    return a.astype(np.int64, copy=False)


def tdiv(a: Int, b: int) -> Int:
    """Quotient rounded toward zero (C99 `/`), for b > 0. Python ints stay Python ints; arrays become int64."""
    b = int(b)
    if b <= 0:
        raise ValueError(f"tdiv divisor must be positive, got {b}")
    if _is_scalar(a):
        a = int(a)
        return -((-a) // b) if a < 0 else a // b
    x = _i64(a)
    if b > INT64_MAX:  # |x| <= 2^63 - 1 < b, so every quotient is 0
        return np.zeros_like(x)
    q = np.abs(x) // b  # one division: |x| // b is the truncated quotient's magnitude
    return np.where(x < 0, -q, q)


def int_sqrt(n: int) -> int:
    """floor(sqrt(n)) by the integer Newton iteration of docs/semantics.md#integer-primitives."""
    n = int(n)
    if n < 0:
        raise ValueError("int_sqrt of a negative number")
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


def clip(v: Int, lo: int, hi: int) -> Int:
    """min(max(v, lo), hi)."""
    if _is_scalar(v):
        return min(max(int(v), lo), hi)
    return np.minimum(np.maximum(_i64(v), lo), hi)


def wrap(v: Int, bits: int) -> Int:
    """Two's-complement reinterpretation modulo 2^bits: ((v + 2^(N-1)) mod 2^N) - 2^(N-1)."""
    if not 1 <= bits <= 64:
        raise ValueError(f"wrap width must be 1..64, got {bits}")
    half, mask = 1 << (bits - 1), (1 << bits) - 1
    if _is_scalar(v):
        return ((int(v) + half) & mask) - half
    x = _i64(v)
    if bits == 64:
        return x.copy()
    # int64 array arithmetic is modulo 2^64, which preserves every residue modulo 2^bits.
    return ((x + half) & mask) - half


def saturate(v: Int, bits: int) -> Int:
    """sat_b: clip into the symmetric range [-(2^(b-1)-1), 2^(b-1)-1]."""
    m = (1 << (bits - 1)) - 1
    return clip(v, -m, m)


def _sem(semantics: Semantics | str) -> Semantics:
    return Semantics(semantics)


# ---------------------------------------------------------------------------------------------------------------
# PRNG (docs/semantics.md#random-numbers): PCG32 XSH-RR with a 64-bit state
# ---------------------------------------------------------------------------------------------------------------

PCG_MULT = 6364136223846793005
_JUMP_BLOCK = 1 << 16
_jump_tables: tuple[np.ndarray, np.ndarray] | None = None


def _jump() -> tuple[np.ndarray, np.ndarray]:
    """uint64 tables A[k] = a^k and D[k] = sum_{j<k} a^j (mod 2^64), k = 0.._JUMP_BLOCK.

    After k steps from state s, the state is A[k]*s + inc*D[k] (mod 2^64): this lets `Pcg32.uniform_ints` compute a
    whole block of consecutive states, and hence of outputs, with uint64 array arithmetic (which wraps silently).
    """
    global _jump_tables
    if _jump_tables is None:
        a_pow = np.ones(1, dtype=np.uint64)
        d_sum = np.zeros(1, dtype=np.uint64)
        am, dm = PCG_MULT, 1  # a^m and sum_{j<m} a^j for m = len(a_pow) = 1
        while len(a_pow) < _JUMP_BLOCK + 1:
            # state after m + j steps: A[j]*(A[m]*s + inc*D[m]) + inc*D[j]
            a_pow = np.concatenate([a_pow, a_pow * np.uint64(am)])
            d_sum = np.concatenate([d_sum, a_pow[: len(d_sum)] * np.uint64(dm) + d_sum])
            am, dm = (am * am) & M64, (am * dm + dm) & M64
        _jump_tables = (a_pow[: _JUMP_BLOCK + 1].copy(), d_sum[: _JUMP_BLOCK + 1].copy())
    return _jump_tables


def _pcg_output(old: np.ndarray) -> np.ndarray:
    """XSH-RR output of each (pre-step) uint64 state."""
    u32 = np.uint64(M32)
    xs = (((old >> np.uint64(18)) ^ old) >> np.uint64(27)) & u32
    rot = old >> np.uint64(59)
    return ((xs >> rot) | (xs << ((np.uint64(32) - rot) & np.uint64(31)))) & u32


class Pcg32:
    """PCG32 exactly as docs/semantics.md#random-numbers describes it, on Python ints masked to 64 bits."""

    __slots__ = ("state", "inc")

    def __init__(self, seed: int = 0, stream: int = 0) -> None:
        self.state = 0
        self.inc = 1
        self.seed(seed, stream)

    def seed(self, s: int, stream: int) -> None:
        self.state = 0
        self.inc = (2 * int(stream) + 1) & M64
        self.next_u32()
        self.state = (self.state + int(s)) & M64
        self.next_u32()

    def next_u32(self) -> int:
        old = self.state
        self.state = (old * PCG_MULT + self.inc) & M64
        xs = (((old >> 18) ^ old) >> 27) & M32
        rot = old >> 59
        return ((xs >> rot) | (xs << ((32 - rot) & 31))) & M32

    def uniform_int(self, lo: int, hi: int) -> int:
        n = hi - lo + 1
        if not 1 <= n < (1 << 32):
            raise ValueError(f"uniform_int range [{lo}, {hi}] must hold 1 .. 2^32-1 values")
        t = ((1 << 32) - n) % n
        while True:
            u = self.next_u32()
            if u >= t:
                return lo + u % n

    def coin(self) -> int:
        return self.uniform_int(0, 1)

    def keep(self, pct: int) -> int:
        return int(self.uniform_int(0, 99) >= pct)

    def permutation(self, n: int) -> list[int]:
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.uniform_int(0, i)
            p[i], p[j] = p[j], p[i]
        return p

    def uniform_ints(self, lo: int, hi: int, count: int) -> np.ndarray:
        """`count` successive uniform_int(lo, hi) draws as an int64 array: identical values and final state to
        calling `uniform_int` `count` times (rejections included), computed block-wise with uint64 arrays."""
        n = hi - lo + 1
        if not 1 <= n < (1 << 32):
            raise ValueError(f"uniform_int range [{lo}, {hi}] must hold 1 .. 2^32-1 values")
        if count < 64:
            return np.array([self.uniform_int(lo, hi) for _ in range(count)], dtype=np.int64)
        t = ((1 << 32) - n) % n
        a_pow, d_sum = _jump()
        out = np.empty(count, dtype=np.int64)
        done = 0
        inc = np.uint64(self.inc)
        while done < count:
            need = count - done
            m = min(_JUMP_BLOCK, need + 16)
            s = np.uint64(self.state)
            u = _pcg_output(a_pow[:m] * s + inc * d_sum[:m])
            if t:
                pos = np.flatnonzero(u >= np.uint64(t))
                take = pos[:need]
                used = int(take[-1]) + 1 if len(take) == need else m
                vals = u[take]
            else:
                used = min(m, need)
                vals = u[:used]
            out[done:done + len(vals)] = (vals % np.uint64(n)).astype(np.int64) + lo
            done += len(vals)
            self.state = (int(a_pow[used]) * self.state + self.inc * int(d_sum[used])) & M64
        return out


# ---------------------------------------------------------------------------------------------------------------
# Initialisation (docs/semantics.md#initialisation)
# ---------------------------------------------------------------------------------------------------------------

def kaiming_bound(fan_in: int, gain_milli: int) -> int:
    """B(fan_in) = min(64, (gain*128*1732) // (int_sqrt(fan_in)*10^6))."""
    return min(64, (gain_milli * 128 * 1732) // (int_sqrt(fan_in) * 10 ** 6))


# ---------------------------------------------------------------------------------------------------------------
# Layer arithmetic
# ---------------------------------------------------------------------------------------------------------------

def _max_abs(a: np.ndarray) -> int:
    return int(np.abs(a).max()) if a.size else 0


def _int_dot(subscripts: str, a: Int, b: Int, terms: int, semantics: Semantics | str, what: str) -> np.ndarray:
    """A sum of products `np.einsum(subscripts, a, b)` with integer semantics, as a contiguous int64 array.

    * reference: the exact sum modulo 2^32, i.e. wrap32. It is computed in uint32, whose arithmetic is modular
      (the C99 trick of docs/semantics.md#integer-primitives), and reinterpreted as int32.
    * nitrogen: the exact sum. The bound terms*max|a|*max|b| covers every partial sum in any order (0 lies in every
      term interval), so the sum runs in int32 when that bound fits, in int64 when it fits there, and is refused
      otherwise (the bounds pass should have rejected such a spec).
    Integer einsum is used because NumPy's integer matmul is slower and has no BLAS path anyway.
    """
    a, b = _i64(a), _i64(b)
    if _sem(semantics) is Semantics.REFERENCE:
        out = np.einsum(subscripts, a.astype(np.uint32), b.astype(np.uint32)).view(np.int32)
    else:
        bound = _max_abs(a) * _max_abs(b) * terms
        if bound > INT64_MAX:
            raise OverflowError(f"{what}: a sum of {terms} products may exceed int64; nitrogen needs exact values")
        if bound <= INT32_MAX:
            out = np.einsum(subscripts, a.astype(np.int32), b.astype(np.int32))
        else:
            out = np.einsum(subscripts, a, b)
    return np.ascontiguousarray(out, dtype=np.int64)


def int_linear(x: Int, w: Int, semantics: Semantics | str) -> np.ndarray:
    """Linear forward: acc[n][o] = sum_i x[n][i]*W[o][i]; reference wraps it with wrap32
    (docs/semantics.md#integer-linear-and-conv)."""
    x, w = _i64(x), _i64(w)
    # 'oi,ni->on' keeps the big weight rows in cache: about twice as fast as 'ni,oi->no' for MLP4 shapes.
    return _int_dot("oi,ni->on", w, x, x.shape[1], semantics, "linear accumulator").T.copy()


def int_linear_input_grad(delta: Int, w: Int, semantics: Semantics | str) -> np.ndarray:
    """Linear input gradient: d_in[n][i] = sum_o delta[n][o]*W[o][i] (W before the update); reference wraps it
    (docs/semantics.md#backward-pass)."""
    delta, w = _i64(delta), _i64(w)
    return _int_dot("no,oi->ni", delta, w, delta.shape[1], semantics, "linear input gradient")


def int_linear_weight_grad(delta: Int, x: Int, semantics: Semantics | str) -> np.ndarray:
    """Linear weight gradient: G[o][i] = sum_n delta[n][o]*x[n][i] (a batch sum); reference wraps it
    (docs/semantics.md#backward-pass)."""
    delta, x = _i64(delta), _i64(x)
    return _int_dot("on,ni->oi", np.ascontiguousarray(delta.T), x, delta.shape[0], semantics,
                    "linear weight gradient")


# Below this many terms per int32 chunk, the per-call overhead outweighs int32's speed: use one int64 sum instead.
MIN_INT32_CHUNK = 256


def _dot_nt(a: np.ndarray, b: np.ndarray, amax: int, bmax: int, semantics: Semantics, what: str) -> np.ndarray:
    """out[i][j] = sum_k a[i][k]*b[j][k] as int64: wrap32 of the sum (reference), or exact (nitrogen).

    `amax`/`bmax` bound |a| and |b| (computed once by the caller, which calls this per kernel offset). Both operands
    should be C-contiguous with the contracted axis last: that is NumPy einsum's fast integer path (several times
    faster in int32 than in int64; integer matmul has no BLAS path and is slower still). In nitrogen mode the sum
    runs in int32 when K*amax*bmax fits, else in int32 chunks of K' terms with K'*amax*bmax <= 2^31-1 added into an
    int64 total (the exact chunking of docs/semantics.md#bounds-and-c-types), else in int64; it is refused when
    even int64 cannot hold it.
    """
    k = a.shape[1]
    if semantics is Semantics.REFERENCE:
        # uint32 arithmetic is modular, so this is the exact sum mod 2^32 (docs/semantics.md#integer-primitives),
        # read back as int32.
        out = np.einsum("ik,jk->ij", a.astype(np.uint32, copy=False), b.astype(np.uint32, copy=False))
        return out.view(np.int32).astype(np.int64)
    per = amax * bmax
    if per == 0 or k == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    if per * k > INT64_MAX:
        raise OverflowError(f"{what}: a sum of {k} products may exceed int64; nitrogen needs exact values")
    if per <= INT32_MAX:
        chunk = INT32_MAX // per
        a32, b32 = a.astype(np.int32, copy=False), b.astype(np.int32, copy=False)
        if chunk >= k:
            return np.einsum("ik,jk->ij", a32, b32).astype(np.int64)
        if chunk >= MIN_INT32_CHUNK:
            total = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
            for s in range(0, k, chunk):
                total += np.einsum("ik,jk->ij", a32[:, s:s + chunk], b32[:, s:s + chunk])
            return total
    return np.einsum("ik,jk->ij", a.astype(np.int64, copy=False), b.astype(np.int64, copy=False))


def _narrow(a: np.ndarray, semantics: Semantics) -> tuple[np.ndarray, int]:
    """`a` converted once for `_dot_nt` (uint32 residues in reference, int32 when it fits in nitrogen) and max|a|."""
    if semantics is Semantics.REFERENCE:
        return a.astype(np.uint32), 0
    m = _max_abs(a)
    return (a.astype(np.int32) if m <= INT32_MAX else a.astype(np.int64)), m


def int_conv2d(x: Int, w: Int, padding: int, semantics: Semantics | str) -> np.ndarray:
    """Conv forward, stride 1, zero padding p: acc[n][f][h][w] = sum_c sum_a sum_b W[f][c][a][b]*x_pad[n][c][h+a][w+b]
    (cross-correlation, no kernel flip); reference wraps it with wrap32 (docs/semantics.md#integer-linear-and-conv).

    Computed as k*k channel contractions, one per kernel offset (a, b), over shifted views of the padded input in
    NHWC layout, so that no full-batch im2col (k*k times the input) is ever materialised."""
    sem = _sem(semantics)
    x, w = _i64(x), _i64(w)
    n, c, h, wd = x.shape
    f, c2, k, k2 = w.shape
    p = int(padding)
    if c2 != c or k2 != k or p < 0:
        raise ValueError(f"conv weight {w.shape} does not fit input {x.shape} with padding {p}")
    ho, wo = h + 2 * p - k + 1, wd + 2 * p - k + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {k} with padding {p} does not fit a {h}x{wd} input")
    xp = np.zeros((n, h + 2 * p, wd + 2 * p, c), dtype=np.int64)
    xp[:, p:p + h, p:p + wd, :] = x.transpose(0, 2, 3, 1)
    xp_n, xmax = _narrow(xp, sem)
    del xp
    wmax = _max_abs(w)
    if sem is Semantics.NITROGEN and xmax * wmax * c * k * k > INT64_MAX:
        raise OverflowError("conv accumulator: the sum may exceed int64; nitrogen needs exact values")
    acc = np.zeros((n * ho * wo, f), dtype=np.int64)
    for a in range(k):
        for b in range(k):
            xs = xp_n[:, a:a + ho, b:b + wo, :].reshape(-1, c)  # a contiguous copy: rows (n, h, w), channels last
            wab = np.ascontiguousarray(w[:, :, a, b])
            acc += _dot_nt(xs, wab, xmax, _max_abs(wab), sem, "conv accumulator")
    if sem is Semantics.REFERENCE:
        acc = wrap(acc, 32)  # each partial is already wrap32; their sum is the same residue modulo 2^32
    return np.ascontiguousarray(acc.reshape(n, ho, wo, f).transpose(0, 3, 1, 2))


def int_conv2d_weight_grad(dz: Int, x: Int, kernel: int, padding: int, semantics: Semantics | str) -> np.ndarray:
    """Conv backward: G[f][c][a][b] = sum_n sum_h sum_w dz[n][f][h][w]*x_pad[n][c][h+a][w+b] over every output
    position (a batch sum); reference wraps it with wrap32 (docs/semantics.md#backward-pass). One contraction over
    (n, h, w) per kernel offset."""
    sem = _sem(semantics)
    dz, x = _i64(dz), _i64(x)
    n, f, ho, wo = dz.shape
    n2, c, h, wd = x.shape
    k, p = int(kernel), int(padding)
    if n2 != n or ho != h + 2 * p - k + 1 or wo != wd + 2 * p - k + 1:
        raise ValueError(f"conv gradient {dz.shape} does not fit input {x.shape}, kernel {k}, padding {p}")
    dzt, dmax = _narrow(dz.transpose(1, 0, 2, 3).reshape(f, -1), sem)  # (f, n*ho*wo), positions last
    xp = np.zeros((c, n, h + 2 * p, wd + 2 * p), dtype=np.int64)
    xp[:, :, p:p + h, p:p + wd] = x.transpose(1, 0, 2, 3)
    xp_n, xmax = _narrow(xp, sem)
    del xp
    g = np.empty((f, c, k, k), dtype=np.int64)
    for a in range(k):
        for b in range(k):
            xs = xp_n[:, :, a:a + ho, b:b + wo].reshape(c, -1)  # (c, n*ho*wo), in the order of dzt's columns
            g[:, :, a, b] = _dot_nt(dzt, xs, dmax, xmax, sem, "conv weight gradient")
    return g


def nitro_scale(acc: Int, sf: int) -> Int:
    """NITRO-Scaling (docs/semantics.md#nitro-scaling): clip(tdiv(acc, SF), -127, 127)."""
    return clip(tdiv(acc, sf), -127, 127)


def _relu_mu(s: int) -> int:
    if s not in RELU_TABLE:
        raise ValueError(f"NITRO-ReLU slope_inv {s} is not one of {sorted(RELU_TABLE)}")
    return RELU_TABLE[s][0]


def nitro_relu(z: Int, s: int) -> Int:
    """NITRO-ReLU forward: P(z) = min(max(z,0),127) + tdiv(min(max(z,-127),0), s); h = P(z) - mu(s)
    (docs/semantics.md#nitro-relu)."""
    mu = _relu_mu(s)
    return clip(z, 0, 127) + tdiv(clip(z, -127, 0), s) - mu


def nitro_relu_backward(delta: Int, z: Int, s: int, semantics: Semantics | str) -> Int:
    """NITRO-ReLU backward from the saved NL input z: delta for 0 <= z <= 126, tdiv(delta, s) for z < 0, and at
    z = 127 tdiv(delta, 2^31-1) (reference) or 0 (nitrogen) (docs/semantics.md#nitro-relu)."""
    sem = _sem(semantics)
    _relu_mu(s)
    scalar = _is_scalar(delta) and _is_scalar(z)
    d, zz = _i64(delta), _i64(z)
    top = tdiv(d, RELU_SATURATED_DIV) if sem is Semantics.REFERENCE else np.zeros_like(d)
    out = np.where(zz >= 127, top, np.where(zz < 0, tdiv(d, s), d))
    return int(out) if scalar else out


def loss_grad(logits: Int, target_onehot: Int, semantics: Semantics | str) -> Int:
    """Loss gradient ŷ - y: wrap8 in reference, exact (int16 range) in nitrogen
    (docs/semantics.md#losses-and-gradients)."""
    sem = _sem(semantics)
    if _is_scalar(logits) and _is_scalar(target_onehot):
        d = int(logits) - int(target_onehot)
    else:
        d = _i64(logits) - _i64(target_onehot)
    return wrap(d, 8) if sem is Semantics.REFERENCE else d


def sgd_terms(w: Int, grad: Int, a: int, decay_inv: int) -> tuple[Int, Int]:
    """IntegerSGD before storage: g = tdiv(G, A) and W_new = W_old - g - d, d = tdiv(W_old, decay_inv) or 0
    (docs/semantics.md#integersgd)."""
    if a < 1:
        raise ValueError(f"A = lr_inv*amp must be >= 1, got {a}")
    g = tdiv(grad, a)
    d = tdiv(w, decay_inv) if decay_inv > 0 else 0
    if _is_scalar(w):
        return g, int(w) - g - d
    return g, _i64(w) - g - d


def store_weights(w_new: Int, semantics: Semantics | str, weight_bits: int) -> Int:
    """IntegerSGD storage: wrap32 (reference) or sat_b (nitrogen)."""
    return wrap(w_new, 32) if _sem(semantics) is Semantics.REFERENCE else saturate(w_new, weight_bits)


def sgd_update(w: Int, grad: Int, a: int, decay_inv: int, semantics: Semantics | str, weight_bits: int) -> Int:
    """IntegerSGD (docs/semantics.md#integersgd): the stored new weights."""
    _, w_new = sgd_terms(w, grad, a, decay_inv)
    return store_weights(w_new, semantics, weight_bits)


# ---------------------------------------------------------------------------------------------------------------
# Augmentation (docs/semantics.md#augmentation)
# ---------------------------------------------------------------------------------------------------------------

def _crop(imgs: np.ndarray, v: int, top: int, left: int, p: int) -> np.ndarray:
    """crop(img, v, top, left)[c][h][w] = img[c][h+top-p][w+left-p] inside the image, else v (leading axes kept)."""
    h, w = imgs.shape[-2:]
    padded = np.full(imgs.shape[:-2] + (h + 2 * p, w + 2 * p), v, dtype=imgs.dtype)
    padded[..., p:p + h, p:p + w] = imgs
    return padded[..., top:top + h, left:left + w].copy()


def augment(x: np.ndarray, rng: Pcg32, crop_pad: int, flip: bool, semantics: Semantics | str) -> np.ndarray:
    """Training augmentation of an int8 (N, C, H, W) batch; reference decides once per batch, nitrogen per sample."""
    sem = _sem(semantics)
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"augment expects an (N, C, H, W) batch, got shape {x.shape}")
    out = x.copy()
    p = int(crop_pad)
    groups = [out] if sem is Semantics.REFERENCE else [out[j] for j in range(out.shape[0])]
    for g in groups:  # each g is a view into `out`
        if p > 0 and rng.coin() == 1:
            v = g.min() if g.size else 0
            top = rng.uniform_int(0, 2 * p)
            left = rng.uniform_int(0, 2 * p)
            g[...] = _crop(g, v, top, left, p)
        if flip and rng.coin() == 1:
            g[...] = g[..., ::-1].copy()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Pools, the learning-pool search and dropout (docs/semantics.md#pools, #learning-pools, #dropout)
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolGeometry:
    """Pool window geometry on an in_h x in_w input: kernel (kh, kw), stride = kernel, padding (ph, pw)
    (docs/semantics.md#pools).

    Window (i, j) and offset (a, b) address input cell (i*kh + a - ph, j*kw + b - pw), padding when outside."""

    kh: int
    kw: int
    ph: int
    pw: int
    in_h: int
    in_w: int

    def __post_init__(self) -> None:
        if not (self.kh >= 1 and self.kw >= 1 and 0 <= self.ph <= self.kh // 2 and 0 <= self.pw <= self.kw // 2):
            raise ValueError(f"bad pool geometry {self}: need 0 <= ph <= kh//2 and 0 <= pw <= kw//2")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"pool kernel ({self.kh}, {self.kw}) does not fit a {self.in_h}x{self.in_w} input")

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.ph - self.kh) // self.kh + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.pw - self.kw) // self.kw + 1

    @property
    def window(self) -> int:
        return self.kh * self.kw

    def _span(self) -> tuple[int, int]:
        """Rows and columns of the input that lie in some window (the rest are ignored and get zero gradient)."""
        return (min(self.in_h, self.out_h * self.kh - self.ph), min(self.in_w, self.out_w * self.kw - self.pw))


def learning_pool_search(c_out: int, size: int, decoder_dim: int) -> tuple[PoolGeometry | None, int]:
    """The learning-pool search (docs/semantics.md#learning-pools) for a C_out x size x size block output, with
    decoder dimension P.

    Returns (geometry, D): geometry is None when the loop keeps kh = kw = 1 (no learning pool), and D is the
    learning linear's fan-in C_out*dh*dw, which may stay above P when the loop stops on kh >= size."""
    kh = kw = 1
    dh = dw = size
    d = c_out * dh * dw
    while d > decoder_dim and kh < size:
        kh = 2 * kh
        dh = (size + kh - 1) // kh
        d = c_out * dh * dw
        if d > decoder_dim:
            kw = 2 * kw
            dw = (size + kw - 1) // kw
            d = c_out * dh * dw
    if kh == 1 and kw == 1:
        return None, d
    ph = (kh * (dh - size // kh)) // 2
    pw = (kw * (dw - size // kw)) // 2
    g = PoolGeometry(kh, kw, ph, pw, size, size)
    assert (g.out_h, g.out_w) == (dh, dw), (g, dh, dw)  # the pooled size is exactly (dh, dw)
    return g, d


def _windows(a: np.ndarray, g: PoolGeometry, fill: int) -> np.ndarray:
    """(N, C, out_h, out_w, kh*kw) int64: every window's cells in row-major window order, padding set to `fill`."""
    n, c = a.shape[:2]
    gh, gw = g.out_h * g.kh, g.out_w * g.kw
    rows, cols = g._span()
    grid = np.full((n, c, gh, gw), fill, dtype=np.int64)
    grid[:, :, g.ph:g.ph + rows, g.pw:g.pw + cols] = a[:, :, :rows, :cols]
    return grid.reshape(n, c, g.out_h, g.kh, g.out_w, g.kw).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, g.out_h, g.out_w, g.window)


def _unwindows(win: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """Inverse of `_windows`: (N, C, in_h, in_w) int64; padding cells are dropped, uncovered cells are 0."""
    n, c = win.shape[:2]
    grid = win.reshape(n, c, g.out_h, g.out_w, g.kh, g.kw).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, g.out_h * g.kh, g.out_w * g.kw)
    rows, cols = g._span()
    out = np.zeros((n, c, g.in_h, g.in_w), dtype=np.int64)
    out[:, :, :rows, :cols] = grid[:, :, g.ph:g.ph + rows, g.pw:g.pw + cols]
    return out


def _check_pool_input(a: np.ndarray, g: PoolGeometry) -> np.ndarray:
    a = _i64(a)
    if a.ndim != 4 or a.shape[2:] != (g.in_h, g.in_w):
        raise ValueError(f"pool input {a.shape} does not match the geometry {g}")
    return a


def max_pool(a: Int, g: PoolGeometry, semantics: Semantics | str) -> tuple[np.ndarray, np.ndarray]:
    """Max pool forward (docs/semantics.md#pools): (y, argmax). The argmax is the first candidate with the largest
    value in row-major window order (np.argmax returns the first maximum). Candidates: `reference` every cell,
    padding holding 0; `nitrogen` the real cells only (padding is set to the int64 minimum in this int64 working
    copy, and every window holds a real cell because ph < kh and pw < kw). y keeps the input's values."""
    a = _check_pool_input(a, g)
    fill = 0 if _sem(semantics) is Semantics.REFERENCE else -(1 << 63)
    win = _windows(a, g, fill)
    arg = np.argmax(win, axis=-1)
    y = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return y, arg


def max_pool_backward(delta: Int, arg: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """Max pool backward: zeros of the input's shape, each window's delta written to its argmax cell. An argmax on a
    padding cell (reference only) lands outside the input and is discarded; uncovered rows/columns stay 0
    (docs/semantics.md#pools)."""
    d = _i64(delta)
    win = np.zeros(d.shape + (g.window,), dtype=np.int64)
    np.put_along_axis(win, np.asarray(arg)[..., None], d[..., None], axis=-1)
    return _unwindows(win, g)


def avg_pool(a: Int, g: PoolGeometry) -> np.ndarray:
    """Average pool forward: tdiv(sum of the window, kh*kw), zero padding counting in the divisor
    (docs/semantics.md#pools)."""
    win = _windows(_check_pool_input(a, g), g, 0)
    return tdiv(win.sum(axis=-1, dtype=np.int64), g.window)


def avg_pool_backward(delta: Int, g: PoolGeometry) -> np.ndarray:
    """Average pool backward: every real cell of a window receives tdiv(delta, kh*kw); padding is discarded,
    uncovered cells get 0 (docs/semantics.md#pools)."""
    q = tdiv(_i64(delta), g.window)
    return _unwindows(np.broadcast_to(q[..., None], q.shape + (g.window,)), g)


def dropout_factor(pct: int) -> int:
    """Dropout rescale R = floor(100000 / (100 - pct)), in integers (1000/(1 - rate) in floating point is wrong;
    docs/semantics.md#dropout)."""
    pct = int(pct)
    if not 1 <= pct <= 99:
        raise ValueError(f"dropout rate must be 1..99 percent, got {pct}")
    return 100_000 // (100 - pct)


def dropout(x: Int, pct: int, rng: Pcg32) -> np.ndarray:
    """Dropout training forward (docs/semantics.md#dropout): m = keep(pct) = [uniform_int(0, 99) >= pct] for every
    element in C-order (sample outermost), drawn from `rng`; y = tdiv(x*m*R, 1000). Exactly x.size draws
    (vectorised, same values and state)."""
    x = _i64(x)
    r = dropout_factor(pct)
    m = (rng.uniform_ints(0, 99, x.size) >= pct).astype(np.int64).reshape(x.shape)
    return tdiv(x * m * r, 1000)


# ---------------------------------------------------------------------------------------------------------------
# Per-kind reference layers
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerInfo:
    """Constants of one weight tensor: PyTorch name, range prefix, shape, SF, amp, decay, init bound."""

    name: str  # "blocks.0.forward.weight", "blocks.0.learning.weight", "output.weight"
    prefix: str  # range-name prefix: "b0", "b0_l", "out"
    in_features: int  # fan_in: in_features of a linear, C_in*k*k of a conv
    out_features: int
    sf: int
    amp: int
    decay_inv: int
    gain_milli: int
    bound: int
    dims: tuple[int, ...] = ()  # the weight's shape when it is not (out, in): (C_out, C_in, k, k) for a conv

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dims or (self.out_features, self.in_features)


@dataclass
class LinearBlockState:
    """A linear block at run time: its block index, slope and its forward and learning layers."""

    index: int
    slope_inv: int
    fwd: LayerInfo
    learn: LayerInfo
    kind: str = "linear"


@dataclass
class ConvBlockState:
    """A conv block at run time: block index, geometry, slope, learning pool (None when kh = kw = 1) and layers."""

    index: int
    kernel: int
    padding: int
    slope_inv: int
    pool: PoolGeometry | None
    pool_type: str  # "max" or "avg"
    fwd: LayerInfo
    learn: LayerInfo
    kind: str = "conv"


@dataclass
class PoolState:
    """A feature-extractor pool (kernel = stride, no padding): its layer index, type and geometry."""

    index: int
    kind: str  # "maxpool" or "avgpool"
    geometry: PoolGeometry


@dataclass
class DropoutState:
    """A dropout item: its layer index, rate and rescale factor R."""

    index: int
    pct: int
    factor: int


def eval_sample_count(n_test: int, batch_size: int, semantics: Semantics) -> int:
    """How many test samples an epoch evaluates (docs/semantics.md#evaluation-on-whole-test-batches): `reference`
    uses the first
    floor(N/bs)*bs (9 984 of 10 000 at bs 64), `nitrogen` uses all of them."""
    if semantics is Semantics.REFERENCE:
        return n_test // batch_size * batch_size
    return n_test


@dataclass(frozen=True)
class RefKind:
    """What the reference does for one spec layer kind.

    build(model, layer, index, block, in_shape) -> (state, out_shape, [LayerInfo in construction order]), with
    `index` the layer's position in `layers` and `block` its position among blocks (-1 for pools and dropouts);
    forward(model, state, a, saved) -> next activation (saved: dict to fill in training, None in evaluation);
    local_step(model, state, saved, onehot) -> local logits (None for items without a local loss).
    """

    build: Callable[..., tuple[Any, tuple[int, ...], list[LayerInfo]]]
    forward: Callable[..., np.ndarray]
    local_step: Callable[..., np.ndarray] | None


def _learning_info(model: Model, block: int, fan_in: int, gain: int) -> LayerInfo:
    """Learning linear fan_in -> C (docs/semantics.md#integersgd): SF 256*fan_in, amp 1, subnet_decay_inv."""
    return LayerInfo(f"blocks.{block}.learning.weight", f"b{block}_l", fan_in, model.num_classes, 256 * fan_in, 1,
                     model.spec.train.subnet_decay_inv, gain, kaiming_bound(fan_in, gain))


def ref_linear_build(model: Model, layer: LinearBlock, index: int, block: int,
                     in_shape: tuple[int, ...]) -> tuple[LinearBlockState, tuple[int, ...], list[LayerInfo]]:
    """Linear block (docs/semantics.md#network-structure): forward linear in->out (SF 256*in, amp_model,
    fwd_decay_inv), learning linear out->C (SF 256*out, amp 1, subnet_decay_inv). Both draw their init bound with
    the block's gain (DECISION, see Model)."""
    t = model.spec.train
    n_in, n_out, s = prod(in_shape), layer.out_features, layer.slope_inv
    _relu_mu(s)
    gain = model.gain_milli(s)
    fwd = LayerInfo(f"blocks.{block}.forward.weight", f"b{block}", n_in, n_out, 256 * n_in, t.amp_model,
                    t.fwd_decay_inv, gain, kaiming_bound(n_in, gain))
    learn = _learning_info(model, block, n_out, gain)
    return LinearBlockState(block, s, fwd, learn), (n_out,), [fwd, learn]


def ref_linear_forward(model: Model, st: LinearBlockState, a: np.ndarray,
                       saved: dict[str, np.ndarray] | None) -> np.ndarray:
    """Block forward: flatten, integer linear, NITRO-Scaling, NITRO-ReLU; saves x_b, z_b, h_b in training."""
    p = st.fwd.prefix
    x = a.reshape(a.shape[0], -1)
    acc = model._checked(f"{p}_acc", int_linear(x, model._w[st.fwd.name], model.semantics))
    z = model._checked(f"{p}_z", nitro_scale(acc, st.fwd.sf))
    h = model._checked(f"{p}_h", nitro_relu(z, st.slope_inv))
    if saved is not None:
        saved.update(x=x, z=z, h=h)
    return h


def _learning_step(model: Model, learn: LayerInfo, p: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Local step (docs/semantics.md#the-training-step), learning linear part: local logits with the current W_l,
    loss gradient, δp with W_l before its update, then G_l and IntegerSGD of W_l. Returns (logits, δp) on the
    flattened (N, D) learning input p."""
    sem = model.semantics
    lp = learn.prefix
    w_l = model._w[learn.name]
    acc = model._checked(f"{lp}_acc", int_linear(p, w_l, sem))
    logits = model._checked(f"{lp}_logits", nitro_scale(acc, learn.sf))
    delta = model._checked(f"{lp}_delta", loss_grad(logits, onehot, sem))
    dp = model._checked(f"{lp}_dx", int_linear_input_grad(delta, w_l, sem))  # W_l before its update
    g_l = model._checked(f"{lp}_grad", int_linear_weight_grad(delta, p, sem))
    model._sgd(learn, g_l)
    return logits, dp


def ref_linear_local_step(model: Model, st: LinearBlockState, saved: dict[str, np.ndarray],
                          onehot: np.ndarray) -> np.ndarray:
    """Local step of a linear block (docs/semantics.md#the-training-step); returns the local logits (computed with
    the pre-update learning weights)."""
    sem = model.semantics
    fp = st.fwd.prefix
    logits, dp = _learning_step(model, st.learn, saved["h"], onehot)
    dz = model._checked(f"{fp}_dz", nitro_relu_backward(dp, saved["z"], st.slope_inv, sem))  # scaling bwd = id
    g_f = model._checked(f"{fp}_grad", int_linear_weight_grad(dz, saved["x"], sem))
    model._sgd(st.fwd, g_f)
    return logits


def _spatial(in_shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ValueError(f"a {what} needs a (C, H, W) input, got {in_shape}: conv blocks and pools come before "
                         "every linear block (docs/semantics.md#network-structure)")
    c, h, w = in_shape
    return c, h, w


def ref_conv_build(model: Model, layer: ConvBlock, index: int, block: int,
                   in_shape: tuple[int, ...]) -> tuple[ConvBlockState, tuple[int, ...], list[LayerInfo]]:
    """Conv block (docs/semantics.md#network-structure): forward conv C_in -> C_out (SF 256*C_in*k^2, fan_in
    C_in*k^2, amp_conv, fwd_decay_inv), the learning-pool search with the layer's decoder_dim, learning linear
    D -> C (SF 256*D, amp 1, subnet_decay_inv)."""
    t = model.spec.train
    c_in, h, w = _spatial(in_shape, "conv block")
    if h != w:
        raise ValueError(f"conv block {block} needs a square input, got {h}x{w} (docs/semantics.md#network-structure)")
    k, p, s, c_out = layer.kernel, layer.padding, layer.slope_inv, layer.out_channels
    _relu_mu(s)
    h_o = h + 2 * p - k + 1
    if k < 1 or p < 0 or h_o < 1:
        raise ValueError(f"conv block {block}: kernel {k} with padding {p} does not fit a {h}x{w} input")
    if layer.learning_pool not in ("max", "avg"):
        raise ValueError(f"conv block {block}: unknown learning pool type '{layer.learning_pool}'")
    pool, d = learning_pool_search(c_out, h_o, layer.decoder_dim)
    if (model.semantics is Semantics.REFERENCE and layer.learning_pool == "avg" and pool is not None
            and (pool.ph or pool.pw)):
        raise ValueError(f"conv block {block}: reference semantics reject an avg learning pool with padding "
                         f"({pool.ph}, {pool.pw}) (docs/semantics.md#average-learning-pool-with-padding)")
    amp = t.amp_model
    # The adjusted conv amplification (docs/semantics.md#integersgd) is a nitrogen-only opt-in; reference must
    # never apply it.
    if t.conv_amp_adjust and model.semantics is Semantics.NITROGEN:
        adj = (h_o * h_o) // (pool.window if pool is not None else 1)
        if adj < 1:
            # DECISION: H_o^2 < kh*kw (possible when the search stops with kh > H_o) would make A = 0; refuse it
            # rather than invent a clamp that the C side might not share.
            raise ValueError(f"conv block {block}: conv_amp_adjust gives amp {t.amp_model}*({h_o}^2 // "
                             f"{pool.window if pool else 1}) = 0")
        amp = t.amp_model * adj
    fan_in = c_in * k * k
    gain = model.gain_milli(s)
    fwd = LayerInfo(f"blocks.{block}.forward.weight", f"b{block}", fan_in, c_out, 256 * fan_in, amp,
                    t.fwd_decay_inv, gain, kaiming_bound(fan_in, gain), (c_out, c_in, k, k))
    learn = _learning_info(model, block, d, gain)
    st = ConvBlockState(block, k, p, s, pool, layer.learning_pool, fwd, learn)
    return st, (c_out, h_o, h_o), [fwd, learn]


def ref_conv_forward(model: Model, st: ConvBlockState, a: np.ndarray,
                     saved: dict[str, np.ndarray] | None) -> np.ndarray:
    """Block forward: integer conv2d (stride 1, zero padding), NITRO-Scaling, NITRO-ReLU; saves x_b, z_b, h_b.

    x_b is saved unpadded: the weight gradient pads it again, which is the same tensor as the saved padded input."""
    p = st.fwd.prefix
    acc = model._checked(f"{p}_acc", int_conv2d(a, model._w[st.fwd.name], st.padding, model.semantics))
    z = model._checked(f"{p}_z", nitro_scale(acc, st.fwd.sf))
    h = model._checked(f"{p}_h", nitro_relu(z, st.slope_inv))
    if saved is not None:
        saved.update(x=a, z=z, h=h)
    return h


def ref_conv_local_step(model: Model, st: ConvBlockState, saved: dict[str, np.ndarray],
                        onehot: np.ndarray) -> np.ndarray:
    """Local step of a conv block (docs/semantics.md#the-training-step): learning pool (recording the argmax),
    flatten, learning linear and its update, unflatten, pool backward, NITRO-ReLU backward, conv weight gradient
    and IntegerSGD with amp_conv."""
    sem = model.semantics
    fp = st.fwd.prefix
    h = saved["h"]
    pooled, arg = h, None
    if st.pool is not None:
        if st.pool_type == "max":
            pooled, arg = max_pool(h, st.pool, sem)
        else:
            pooled = avg_pool(h, st.pool)
        model._checked(f"{fp}_lp", pooled)
    logits, dp = _learning_step(model, st.learn, pooled.reshape(h.shape[0], -1), onehot)
    dh = dp.reshape(pooled.shape)  # unflatten
    if st.pool is not None:
        dh = max_pool_backward(dh, arg, st.pool) if arg is not None else avg_pool_backward(dh, st.pool)
    dz = model._checked(f"{fp}_dz", nitro_relu_backward(dh, saved["z"], st.slope_inv, sem))  # scaling bwd = id
    g_f = model._checked(f"{fp}_grad", int_conv2d_weight_grad(dz, saved["x"], st.kernel, st.padding, sem))
    model._sgd(st.fwd, g_f)
    return logits


def ref_pool_build(model: Model, layer: MaxPool | AvgPool, index: int, block: int,
                   in_shape: tuple[int, ...]) -> tuple[PoolState, tuple[int, ...], list[LayerInfo]]:
    """Feature-extractor pool: kernel k, stride k, no padding, so H_o = H // k (odd sizes drop a row/column;
    docs/semantics.md#pools)."""
    c, h, w = _spatial(in_shape, layer.kind)
    k = layer.kernel
    if not 1 <= k <= min(h, w):
        raise ValueError(f"layer {index}: pool kernel {k} does not fit a {h}x{w} input")
    g = PoolGeometry(k, k, 0, 0, h, w)
    return PoolState(index, layer.kind, g), (c, g.out_h, g.out_w), []


def ref_pool_forward(model: Model, st: PoolState, a: np.ndarray, saved: dict[str, np.ndarray] | None) -> np.ndarray:
    """Forward only, in training and evaluation alike: no argmax is kept and there is no backward
    (docs/semantics.md#backward-pass)."""
    if st.kind == "maxpool":
        y = max_pool(a, st.geometry, model.semantics)[0]  # without padding both modes have the same candidates
    else:
        y = avg_pool(a, st.geometry)
    return model._checked(f"pool{st.index}_y", y)


def ref_dropout_build(model: Model, layer: Dropout, index: int, block: int,
                      in_shape: tuple[int, ...]) -> tuple[DropoutState, tuple[int, ...], list[LayerInfo]]:
    """Dropout (docs/semantics.md#dropout): the shape is unchanged; R = 100000 // (100 - pct)."""
    return DropoutState(index, layer.rate_pct, dropout_factor(layer.rate_pct)), in_shape, []


def ref_dropout_forward(model: Model, st: DropoutState, a: np.ndarray,
                        saved: dict[str, np.ndarray] | None) -> np.ndarray:
    """Training: the dropout mask drawn from rng_train, in forward order; evaluation (saved is None): the identity,
    with no draws."""
    y = a if saved is None else dropout(a, st.pct, model.rng)
    return model._checked(f"drop{st.index}_y", y)


REFERENCE: dict[str, RefKind] = {
    "linear": RefKind(ref_linear_build, ref_linear_forward, ref_linear_local_step),
    "conv": RefKind(ref_conv_build, ref_conv_forward, ref_conv_local_step),
    "maxpool": RefKind(ref_pool_build, ref_pool_forward, None),
    "avgpool": RefKind(ref_pool_build, ref_pool_forward, None),
    "dropout": RefKind(ref_dropout_build, ref_dropout_forward, None),
}


def ref_output_build(model: Model, in_shape: tuple[int, ...], last_slope_inv: int) -> LayerInfo:
    """Output linear F->C, SF 256*F, amp 1, subnet_decay_inv (docs/semantics.md#output-layer-and-prediction)."""
    f = prod(in_shape)
    gain = model.gain_milli(last_slope_inv)
    return LayerInfo("output.weight", "out", f, model.num_classes, 256 * f, 1, model.spec.train.subnet_decay_inv,
                     gain, kaiming_bound(f, gain))


def ref_output_forward(model: Model, info: LayerInfo, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten, integer linear, NITRO-Scaling; returns (x_out, logits)."""
    x = a.reshape(a.shape[0], -1)
    acc = model._checked("out_acc", int_linear(x, model._w[info.name], model.semantics))
    return x, model._checked("out_logits", nitro_scale(acc, info.sf))


def ref_output_update(model: Model, info: LayerInfo, x: np.ndarray, logits: np.ndarray,
                      onehot: np.ndarray) -> None:
    """Global loss gradient, weight gradient and IntegerSGD of the output layer (no input gradient)."""
    sem = model.semantics
    delta = model._checked("out_delta", loss_grad(logits, onehot, sem))
    grad = model._checked("out_grad", int_linear_weight_grad(delta, x, sem))
    model._sgd(info, grad)


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepStats:
    loss: int  # global loss sum_n sum_o (ŷ - y)^2 of the pre-update output forward
    correct: int  # #{n : argmax ŷ[n] == label[n]}, ties -> lowest index
    local_loss: tuple[int, ...]  # per block, from its (first) local step's logits
    local_correct: tuple[int, ...]  # per block, argmax of its local logits == label


@dataclass
class _Item:
    kind: str
    state: Any
    local_steps: int = 1
    saved: dict[str, np.ndarray] = field(default_factory=dict)


def _sq_loss(logits: np.ndarray, onehot: np.ndarray) -> int:
    d = logits - onehot  # unwrapped, exact
    return int(np.sum(d * d, dtype=np.int64))


def _correct(logits: np.ndarray, labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.argmax(logits, axis=1) == labels))


class Model:
    """Reference interpreter of one spec: integer-only training and inference, bit-exact with the generated C.

    `seed` is the run seed s: rng_train = seed(s, 0) initialises every weight (docs/semantics.md#initialisation)
    and then drives augmentation and dropout masks. Kaiming gains: `reference` uses 1372 everywhere; `nitrogen`
    gives a block's forward layer (linear or conv) and learning linear the gain of that block's slope, and the output
    layer the gain of the last block's slope, whether that block is linear or conv (4 without blocks). DECISION
    (recorded in docs/semantics.md#initialisation): the paper names no slope for the output layer, which has no
    NITRO-ReLU of its own; the last block's slope is the slope of the activation that feeds it.
    """

    EVAL_CHUNK = 1024
    EVAL_ELEMENTS = 1 << 23

    def __init__(self, spec: SpecModel, seed: int = 0, ranges: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.spec = spec
        self.semantics: Semantics = Semantics(spec.semantics)
        self.num_classes = spec.num_classes
        self.target_value = spec.target_value
        self.weight_bits = spec.weight_bits
        self.ranges: dict[str, tuple[int, int]] = {k: (int(v[0]), int(v[1])) for k, v in (ranges or {}).items()}
        self.rng = Pcg32(seed, 0)
        self.steps = 0
        self._lr_inv = 0
        self._w: dict[str, np.ndarray] = {}

        kinds = [layer.kind for layer in spec.layers]
        has_conv = "conv" in kinds
        self._items: list[_Item] = []
        self._infos: list[LayerInfo] = []
        shape: tuple[int, ...] = tuple(spec.input_shape)
        last_slope = 4
        block = 0
        self._widest = prod(shape)  # largest per-sample activation, to size evaluation chunks
        for index, layer in enumerate(spec.layers):
            if layer.kind not in REFERENCE:
                raise NotImplementedError(f"the reference does not implement layer kind '{layer.kind}'")
            kind = REFERENCE[layer.kind]
            is_block = kind.local_step is not None
            state, shape, infos = kind.build(self, layer, index, block if is_block else -1, shape)
            # Two local steps only for linear blocks of a network with a conv block, in reference mode
            # (docs/semantics.md#two-local-steps-per-linear-block-in-cnns).
            steps = 2 if (self.semantics is Semantics.REFERENCE and layer.kind == "linear" and has_conv) else 1
            self._items.append(_Item(layer.kind, state, steps))
            self._infos.extend(infos)
            self._widest = max(self._widest, prod(shape))
            if is_block:
                block += 1
                # DECISION: the output layer's gain is that of the last block's slope, linear or conv (see class doc).
                last_slope = getattr(layer, "slope_inv", last_slope)
        self._out = ref_output_build(self, shape, last_slope)
        self._infos.append(self._out)
        self.lr_inv = spec.train.lr_inv

        # docs/semantics.md#initialisation: uniform_int(-B, B) per element in C-order, tensors in construction order.
        for info in self._infos:
            vals = self.rng.uniform_ints(-info.bound, info.bound, info.out_features * info.in_features)
            self._w[info.name] = vals.reshape(info.shape)

    # -- constants ---------------------------------------------------------------------------------------------
    def gain_milli(self, slope_inv: int) -> int:
        if self.semantics is Semantics.REFERENCE:
            return 1372
        if slope_inv not in RELU_TABLE:
            raise ValueError(f"NITRO-ReLU slope_inv {slope_inv} is not one of {sorted(RELU_TABLE)}")
        return RELU_TABLE[slope_inv][1]

    @property
    def layer_info(self) -> tuple[LayerInfo, ...]:
        """Every weight tensor's constants, in construction order (the order of `params`)."""
        return tuple(self._infos)

    @property
    def local_steps(self) -> tuple[int, ...]:
        """r_b of every block (docs/semantics.md#two-local-steps-per-linear-block-in-cnns)."""
        return tuple(item.local_steps for item in self._items if REFERENCE[item.kind].local_step is not None)

    @property
    def rng_state(self) -> tuple[int, int]:
        return (self.rng.state, self.rng.inc)

    def permutation(self, n: int) -> list[int]:
        """An epoch shuffle pi_e = permutation(n) drawn from rng_train (docs/semantics.md#random-numbers), for epoch
        drivers."""
        return self.rng.permutation(n)

    @property
    def lr_inv(self) -> int:
        return self._lr_inv

    @lr_inv.setter
    def lr_inv(self, value: int) -> None:
        if not _is_scalar(value) or int(value) < 1:
            raise ValueError(f"lr_inv must be an integer >= 1, got {value!r}")
        value = int(value)
        worst = value * max(info.amp for info in self._infos)
        if worst > INT64_MAX:
            raise ValueError(f"lr_inv = {value} makes A = lr_inv*amp = {worst} exceed int64")
        self._lr_inv = value

    # -- parameters --------------------------------------------------------------------------------------------
    def _weight_limits(self) -> tuple[int, int]:
        if self.semantics is Semantics.REFERENCE:
            return INT32_MIN, INT32_MAX
        m = (1 << (self.weight_bits - 1)) - 1
        return -m, m

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {info.name: self._w[info.name].copy() for info in self._infos}

    def set_params(self, params: Mapping[str, np.ndarray]) -> None:
        names = [info.name for info in self._infos]
        missing = [n for n in names if n not in params]
        extra = [n for n in params if n not in self._w]
        if missing or extra:
            raise ValueError(f"set_params: missing {missing}, unknown {extra}")
        lo, hi = self._weight_limits()
        new: dict[str, np.ndarray] = {}
        for info in self._infos:
            a = np.asarray(params[info.name])
            if a.dtype.kind not in "iu":
                raise ValueError(f"{info.name}: integer array expected, got dtype {a.dtype}")
            if a.shape != info.shape:
                raise ValueError(f"{info.name}: shape {a.shape}, expected {info.shape}")
            if a.size and (int(a.min()) < lo or int(a.max()) > hi):
                raise ValueError(f"{info.name}: values outside [{lo}, {hi}]")
            new[info.name] = a.astype(np.int64).copy()
        self._w.update(new)

    # -- checks ------------------------------------------------------------------------------------------------
    def _checked(self, name: str, a: np.ndarray) -> np.ndarray:
        """Assert the proven interval of tensor `name` (when given), then return `a`."""
        r = self.ranges.get(name)
        if r is not None:
            lo, hi = r
            arr = np.asarray(a)
            bad = (arr < lo) | (arr > hi)
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise RangeViolation(f"{name}[{i}] = {int(arr.reshape(-1)[i])} outside proven [{lo}, {hi}]")
        return a

    def _sgd(self, info: LayerInfo, grad: np.ndarray) -> None:
        a = self._lr_inv * info.amp
        g, w_new = sgd_terms(self._w[info.name], grad, a, info.decay_inv)
        self._checked(f"{info.prefix}_g", g)
        self._checked(f"{info.prefix}_wnew", w_new)
        self._w[info.name] = self._checked(f"{info.prefix}_w", store_weights(w_new, self.semantics,
                                                                              self.weight_bits))

    def _batch(self, x: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x)
        shape = tuple(self.spec.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, shape))}), got {x.shape}")
        if x.dtype.kind not in "iu":
            raise ValueError(f"x must be int8 data, got dtype {x.dtype}")
        if x.size and (int(x.min()) < -128 or int(x.max()) > 127):
            raise ValueError("x values must lie in the int8 range [-128, 127]")
        x = x.astype(np.int8)
        if labels is None:
            return x, None
        y = np.asarray(labels)
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise ValueError(f"labels must be an integer array of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}]")
        return x, y.astype(np.int64)

    def _onehot(self, labels: np.ndarray) -> np.ndarray:
        y = np.zeros((labels.shape[0], self.num_classes), dtype=np.int64)
        y[np.arange(labels.shape[0]), labels] = self.target_value
        return y

    # -- training ----------------------------------------------------------------------------------------------
    def train_step(self, x: np.ndarray, labels: np.ndarray) -> StepStats:
        """One training step (docs/semantics.md#the-training-step) in the published order: augmentation, the whole
        forward, the output update, then each block's r_b local steps (blocks last to first, as published; the order
        does not matter)."""
        x, y = self._batch(x, labels)
        assert y is not None
        if x.shape[0] != self.spec.train.batch_size:
            raise ValueError(f"a training batch holds {self.spec.train.batch_size} samples, got {x.shape[0]}")
        aug = self.spec.train.augment
        x = augment(x, self.rng, aug.crop_pad, aug.flip, self.semantics)
        onehot = self._onehot(y)

        a: np.ndarray = self._checked("x", x.astype(np.int64))
        for item in self._items:
            item.saved = {}
            a = REFERENCE[item.kind].forward(self, item.state, a, item.saved)
        x_out, logits = ref_output_forward(self, self._out, a)
        loss, correct = _sq_loss(logits, onehot), _correct(logits, y)
        ref_output_update(self, self._out, x_out, logits, onehot)

        local_loss = [0] * len(self._items)
        local_correct = [0] * len(self._items)
        for k in reversed(range(len(self._items))):
            item = self._items[k]
            step = REFERENCE[item.kind].local_step
            if step is None:
                continue
            for r in range(item.local_steps):
                local_logits = step(self, item.state, item.saved, onehot)
                if r == 0:
                    local_loss[k] = _sq_loss(local_logits, onehot)
                    local_correct[k] = _correct(local_logits, y)
            item.saved = {}
        self.steps += 1
        blocks = [k for k, item in enumerate(self._items) if REFERENCE[item.kind].local_step is not None]
        return StepStats(loss, correct, tuple(local_loss[k] for k in blocks), tuple(local_correct[k] for k in blocks))

    # -- inference ---------------------------------------------------------------------------------------------
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Evaluation forward: no augmentation, no draws, no learning layers; int8 (N, C) logits."""
        x, _ = self._batch(x, None)
        out = np.empty((x.shape[0], self.num_classes), dtype=np.int8)
        # Per-sample forward, so the chunk size cannot change results; keep the widest int64 activation ~64 MB.
        chunk = max(1, min(self.EVAL_CHUNK, self.EVAL_ELEMENTS // self._widest))
        for start in range(0, x.shape[0], chunk):
            a: np.ndarray = self._checked("x", x[start:start + chunk].astype(np.int64))
            for item in self._items:
                a = REFERENCE[item.kind].forward(self, item.state, a, None)
            _, logits = ref_output_forward(self, self._out, a)
            out[start:start + len(logits)] = logits.astype(np.int8)  # logits are clipped to [-127, 127]
        return out

    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> int:
        """Correct predictions (argmax, ties -> lowest index) over every sample given, like the C
        `<name>_evaluate()`. Which samples a test-set evaluation passes is protocol, not arithmetic:
        see `eval_sample_count` (docs/semantics.md#evaluation-on-whole-test-batches)."""
        x, y = self._batch(x, labels)
        assert y is not None
        if x.shape[0] == 0:
            return 0
        return _correct(self.predict(x), y)
