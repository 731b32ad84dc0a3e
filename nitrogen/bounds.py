"""Bounds: ir.Program -> BoundsReport, the worst-case interval of every tensor.

Interval arithmetic on Python ints (docs/semantics.md#bounds-and-c-types): weights lie in their storage range, a
product interval is the hull of the four corner products, a sum of M terms is M times the
term interval (0 lies in every interval, so every partial sum in any order stays inside),
tdiv by a positive constant maps the endpoints. Each tensor whose type the semantics leave
open gets the narrowest signed type that holds it (accumulators: int32 or int64). In
`reference` mode accumulators, gradients and weights are int32 and wrap
(docs/semantics.md#int32-wraps).
A worst case that no C type holds is reported at the spec line of the layer that causes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import DiagnosticSink, InternalError, Span
from .ir import I32, I64, SIGNED_TYPES, IntType, Op, OpKind, Program, Role, Store, Tensor

Interval = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Bound:
    name: str
    lo: int              # range of the stored values (after wrap or saturation)
    hi: int
    exact_lo: int        # range of the mathematical value before any wrap or saturation
    exact_hi: int
    ctype: IntType
    store: Store
    doc: str

    @property
    def bits(self) -> int:
        """Bits the tensor's type needs to hold the exact value: two's complement for a signed C type, no
        sign bit for an unsigned one (labels [0, 9] need 4 bits, not 5)."""
        return bits_needed(self.exact_lo, self.exact_hi, signed=self.ctype.signed or self.exact_lo < 0)


@dataclass(frozen=True, slots=True)
class BoundsReport:
    bounds: tuple[Bound, ...]
    product_types: tuple[tuple[str, IntType], ...]   # accumulator name -> type of one product term
    chunks: tuple[tuple[str, int], ...] = ()          # int64 accumulator -> terms per exact int32 partial sum
    unused: tuple[str, ...] = ()                      # scratch the chosen code path never touches (not stored)

    def __getitem__(self, name: str) -> Bound:
        for b in self.bounds:
            if b.name == name:
                return b
        raise InternalError(f"no bound for '{name}'")

    @property
    def ranges(self) -> dict[str, tuple[int, int]]:
        """Plain data for the reference's run-time range assertions."""
        return {b.name: (b.lo, b.hi) for b in self.bounds}

    def product_type(self, acc: str) -> IntType:
        return dict(self.product_types)[acc]

    def chunk(self, acc: str) -> int:
        """Terms per int32 partial sum of an int64 accumulator (docs/semantics.md#bounds-and-c-types), or 0 for no
        chunking."""
        return dict(self.chunks).get(acc, 0)


def bits_needed(lo: int, hi: int, signed: bool = True) -> int:
    """Smallest two's-complement width that holds [lo, hi]; with signed=False, the smallest unsigned width
    that holds [lo, hi] with lo >= 0 (at least 1)."""
    if not signed:
        if lo < 0:
            raise InternalError(f"an unsigned width for [{lo}, {hi}]")
        return max(hi.bit_length(), 1)
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length()) + 1


def hull_mul(a: Interval, b: Interval) -> Interval:
    corners = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(corners), max(corners)


def tdiv(a: int, b: int) -> int:
    """Truncating division for b > 0 (C99 `/`)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def _narrowest(lo: int, hi: int, candidates: tuple[IntType, ...]) -> IntType | None:
    for t in candidates:
        if t.min <= lo and hi <= t.max:
            return t
    return None


class _Analysis:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.exact: dict[str, Interval] = {}
        self.bounds: dict[str, Bound] = {}
        self.products: dict[str, IntType] = {}
        self.chunks: dict[str, int] = {}
        self.unused: set[str] = set()
        self.sink = DiagnosticSink()
        self.overflows: set[tuple[Span | None, int, int]] = set()  # one E301 per problem, not per copy of it
        self.wmax = (1 << (program.weight_bits - 1)) - 1
        self.lr_inv_max = program.constant("LR_INV_MAX")

    def interval(self, name: str) -> Interval:
        b = self.bounds[name]
        return b.lo, b.hi

    def define(self, name: str, lo: int, hi: int, op: Op | None = None) -> None:
        """Record the exact interval of `name` and decide its C type and stored range."""
        t = self.program.tensor(name)
        if t.store is Store.WRAP:
            ctype = t.dtype or I32
            as_signed = IntType(ctype.bits)  # an unsigned accumulator is read back as its signed value
            slo, shi = (lo, hi) if as_signed.min <= lo and hi <= as_signed.max else (as_signed.min, as_signed.max)
        elif t.store is Store.SATURATE:
            ctype = t.dtype or _narrowest(-self.wmax, self.wmax, SIGNED_TYPES) or I32
            slo, shi = max(lo, -self.wmax), min(hi, self.wmax)
        else:
            candidates = (I32, I64) if t.role is Role.TEMP else SIGNED_TYPES
            chosen = t.dtype if t.dtype is not None else _narrowest(lo, hi, candidates)
            if chosen is None or not (chosen.min <= lo and hi <= chosen.max):
                self._overflow(t, lo, hi, op)
                chosen = t.dtype or I64
                lo, hi = max(lo, chosen.min), min(hi, chosen.max)
            ctype, slo, shi = chosen, lo, hi
        self.bounds[name] = Bound(name, slo, shi, lo, hi, ctype, t.store, t.doc)

    def product(self, acc: str, a: Interval, b: Interval, op: Op) -> Interval:
        lo, hi = hull_mul(a, b)
        self.products[acc] = I32 if I32.min <= lo and hi <= I32.max else I64
        if not (I64.min <= lo and hi <= I64.max):
            self._overflow(self.program.tensor(acc), lo, hi, op)
        return lo, hi

    def _overflow(self, t: Tensor, lo: int, hi: int, op: Op | None) -> None:
        span = (op.span if op else None) or t.span
        if (span, lo, hi) in self.overflows:  # e.g. the gradient row buffer, which holds the gradient's interval
            return
        self.overflows.add((span, lo, hi))
        self.sink.error(
            "E301", f"{t.doc or t.name} needs {bits_needed(lo, hi)} bits; no C integer type holds it", span,
            notes=(f"worst case of '{t.name}' is [{lo}, {hi}], computed from the declared widths and shapes",),
            hint="lower weight_bits, batch_size or the layer width")


def bound_kaiming_init(an: _Analysis, op: Op) -> None:
    bound = op.int_attr("bound")
    (w,) = op.outs
    lo, hi = an.interval(w)
    if not (lo <= -bound and bound <= hi):  # pragma: no cover - weight_bits >= 8 always holds 64
        raise InternalError(f"initial bound {bound} does not fit {w}")


def bound_augment(an: _Analysis, op: Op) -> None:
    an.define(op.outs[0], *an.interval(op.ins[0]), op=op)


def bound_linear_scale(an: _Analysis, op: Op) -> None:
    x, w = op.ins
    (acc,) = op.temps
    lo, hi = an.product(acc, an.interval(x), an.interval(w), op)
    n_in, sf = op.int_attr("n_in"), op.int_attr("sf")
    an.define(acc, n_in * lo, n_in * hi, op)
    if an.bounds[acc].ctype == I64 and an.products[acc] == I32:
        # Exact chunking (docs/semantics.md#bounds-and-c-types): K terms sum in int32 when K * max|term| <= 2^31 - 1.
        an.chunks[acc] = min(n_in, I32.max // max(-lo, hi, 1))
    alo, ahi = an.interval(acc)
    an.define(op.outs[0], max(-127, min(127, tdiv(alo, sf))), max(-127, min(127, tdiv(ahi, sf))), op)


def bound_nitro_relu(an: _Analysis, op: Op) -> None:
    table = op.attr("table")
    assert isinstance(table, tuple)
    lo, hi = an.interval(op.ins[0])
    an.define(op.outs[0], table[lo + 127], table[hi + 127], op)  # P is non-decreasing


def bound_loss_grad(an: _Analysis, op: Op) -> None:
    lo, hi = an.interval(op.ins[0])
    target = op.int_attr("target")
    an.define(op.outs[0], lo - target, hi, op)
    worst = max((lo - target) ** 2, hi ** 2)
    bs, classes = an.program.tensor(op.outs[0]).shape
    an.define(op.temps[0], 0, bs * classes * worst, op)


def bound_linear_dx(an: _Analysis, op: Op) -> None:
    delta, w = op.ins
    lo, hi = an.product(op.outs[0], an.interval(delta), an.interval(w), op)
    n_out = op.int_attr("n_out")
    an.define(op.outs[0], n_out * lo, n_out * hi, op)


def bound_nitro_relu_backward(an: _Analysis, op: Op) -> None:
    lo, hi = an.interval(op.ins[0])
    an.define(op.outs[0], min(lo, 0), max(hi, 0), op)  # tdiv by s >= 1 or 0 stays inside [lo, hi] and 0


def bound_linear_grad_sgd(an: _Analysis, op: Op) -> None:
    delta, x, w = op.ins
    batch = an.program.tensor(delta).shape[0]
    _grad_sgd(an, op, an.interval(delta), an.interval(x), batch, w)


def _grad_sgd(an: _Analysis, op: Op, delta: Interval, x: Interval, terms: int, w: str) -> None:
    """A weight gradient of `terms` products delta * x per weight, then IntegerSGD
    (docs/semantics.md#integersgd)."""
    grad, g, wnew, row = op.temps[:4]
    lo, hi = an.product(grad, delta, x, op)
    an.define(grad, terms * lo, terms * hi, op)
    an.define(row, terms * lo, terms * hi, op)
    an.products[row] = an.products[grad]
    glo, ghi = an.interval(grad)
    a_min = op.int_attr("amp")  # A = lr_inv * amp >= amp, lr_inv >= 1
    an.define(g, min(0, tdiv(glo, a_min)), max(0, tdiv(ghi, a_min)), op)
    wlo, whi = an.interval(w)
    decay = op.int_attr("decay_inv")
    dlo, dhi = (tdiv(wlo, decay), tdiv(whi, decay)) if decay else (0, 0)
    gl, gh = an.interval(g)
    an.define(wnew, wlo - gh - dhi, whi - gl - dlo, op)
    if not (I64.min <= wlo - gh - dhi and whi - gl - dlo <= I64.max):
        an._overflow(an.program.tensor(wnew), wlo - gh - dhi, whi - gl - dlo, op)


def bound_conv_scale(an: _Analysis, op: Op) -> None:
    x, w = op.ins
    acc, plane, part, xpad = op.temps
    xlo, xhi = an.interval(x)
    an.define(xpad, min(xlo, 0), max(xhi, 0), op)
    lo, hi = an.product(acc, an.interval(x), an.interval(w), op)
    taps = op.int_attr("kernel") ** 2
    terms = op.int_attr("c_in") * taps
    an.define(acc, terms * lo, terms * hi, op)
    an.define(plane, terms * lo, terms * hi, op)
    an.products[plane] = an.products[acc]
    channels = 0
    if an.bounds[acc].ctype == I64 and an.products[acc] == I32:
        # Exact chunking (docs/semantics.md#bounds-and-c-types) by whole input channels: k*k*channels terms fit
        # int32.
        channels = min(op.int_attr("c_in"), I32.max // max(-lo, hi, 1) // taps)
        if channels:
            an.chunks[acc] = channels
    an.define(part, channels * taps * lo, channels * taps * hi, op)
    if not channels:
        an.unused.add(part)
    sf = op.int_attr("sf")
    alo, ahi = an.interval(acc)
    an.define(op.outs[0], max(-127, min(127, tdiv(alo, sf))), max(-127, min(127, tdiv(ahi, sf))), op)


def _padded(op: Op) -> bool:
    return bool(op.int_attr("ph") or op.int_attr("pw"))


def bound_max_pool(an: _Analysis, op: Op) -> None:
    lo, hi = an.interval(op.ins[0])
    # reference: padding cells hold 0 and can win (docs/semantics.md#padding-that-wins-a-max-pool)
    if op.attr("zero_pad") and _padded(op):
        lo, hi = min(lo, 0), max(hi, 0)
    an.define(op.outs[0], lo, hi, op)
    if len(op.outs) > 1:  # the learning max pool: argmax offset, and z at the argmax cell (0 on padding)
        an.define(op.outs[1], 0, op.int_attr("kh") * op.int_attr("kw") - 1, op)
        zlo, zhi = an.interval(op.ins[1])
        an.define(op.outs[2], min(zlo, 0), max(zhi, 0), op)


def bound_avg_pool(an: _Analysis, op: Op) -> None:
    lo, hi = an.interval(op.ins[0])
    if _padded(op):  # zero padding counts in the divisor (docs/semantics.md#pools)
        lo, hi = min(lo, 0), max(hi, 0)
    cells = op.int_attr("kh") * op.int_attr("kw")
    an.define(op.temps[0], cells * lo, cells * hi, op)
    slo, shi = an.interval(op.temps[0])
    an.define(op.outs[0], tdiv(slo, cells), tdiv(shi, cells), op)


def bound_dropout(an: _Analysis, op: Op) -> None:
    lo, hi = an.interval(op.ins[0])
    scale = op.int_attr("scale")
    plo, phi = min(lo * scale, 0), max(hi * scale, 0)  # a dropped element is 0
    an.define(op.temps[0], plo, phi, op)
    an.define(op.outs[0], tdiv(plo, 1000), tdiv(phi, 1000), op)


def bound_conv_grad_sgd(an: _Analysis, op: Op) -> None:
    dp, *_, x, w = op.ins
    dz = op.temps[4]
    lo, hi = an.interval(dp)
    # Pool backward routes or divides by kh*kw >= 1, NITRO-ReLU backward divides by s >= 1 or zeroes:
    # every value stays inside the incoming interval and 0 (docs/semantics.md#bounds-and-c-types).
    an.define(dz, min(lo, 0), max(hi, 0), op)
    batch = an.program.tensor(dp).shape[0]
    # Max routing: one cell per learning-pool window carries a gradient; otherwise every output position.
    positions = op.int_attr("oh") * op.int_attr("ow") if op.attr("routing") == "max" else op.int_attr("out") ** 2
    _grad_sgd(an, op, an.interval(dz), an.interval(x), batch * positions, w)


BOUNDS: dict[OpKind, Callable[[_Analysis, Op], None]] = {
    OpKind.KAIMING_INIT: bound_kaiming_init,
    OpKind.AUGMENT: bound_augment,
    OpKind.LINEAR_SCALE: bound_linear_scale,
    OpKind.NITRO_RELU: bound_nitro_relu,
    OpKind.LOSS_GRAD: bound_loss_grad,
    OpKind.LINEAR_DX: bound_linear_dx,
    OpKind.NITRO_RELU_BACKWARD: bound_nitro_relu_backward,
    OpKind.LINEAR_GRAD_SGD: bound_linear_grad_sgd,
    OpKind.CONV_SCALE: bound_conv_scale,
    OpKind.MAX_POOL: bound_max_pool,
    OpKind.MAX_POOL_ARGMAX: bound_max_pool,
    OpKind.AVG_POOL: bound_avg_pool,
    OpKind.DROPOUT: bound_dropout,
    OpKind.CONV_GRAD_SGD: bound_conv_grad_sgd,
    OpKind.CONV_GRAD_SGD_MAX: bound_conv_grad_sgd,
}


def check_bounds(program: Program) -> BoundsReport:
    """Prove an interval for every tensor of the training step, or raise NitrogenError (E3xx)."""
    an = _Analysis(program)
    classes = program.constant("N_CLASSES")
    an.define("x", -128, 127)
    an.define("labels", 0, classes - 1)
    for t in program.tensors:
        if t.role is Role.PARAM:
            if t.store is Store.WRAP:
                an.define(t.name, I32.min, I32.max)
            else:
                an.define(t.name, -an.wmax, an.wmax)
    for op in program.init + program.train:
        BOUNDS[op.kind](an, op)
    an.sink.raise_if_any()
    missing = [t.name for t in program.tensors if t.name not in an.bounds]
    if missing:
        raise InternalError(f"bounds: no interval for {missing}")
    order = [t.name for t in program.tensors]
    return BoundsReport(tuple(an.bounds[n] for n in order), tuple(sorted(an.products.items())),
                        tuple(sorted(an.chunks.items())), tuple(sorted(an.unused)))


def lr_amp_rows(program: Program) -> list[tuple[str, int, int]]:
    """(name, lo, hi) of A = lr_inv * amp for every weight tensor: always int64
    (docs/semantics.md#bounds-and-c-types)."""
    rows = []
    for op in program.train:
        if op.kind in (OpKind.LINEAR_GRAD_SGD, OpKind.CONV_GRAD_SGD, OpKind.CONV_GRAD_SGD_MAX):
            amp = op.int_attr("amp")
            rows.append((f"{op.outs[0]}.lr_amp", amp, program.constant("LR_INV_MAX") * amp))
    return rows


__all__ = ["check_bounds", "BoundsReport", "Bound", "bits_needed", "lr_amp_rows"]
