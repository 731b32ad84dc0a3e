"""Cost report: the static memory plan by category, the integer operations of one training step, and
the energy estimate of the paper's analytic method next to FP32 backpropagation of the same architecture
(docs/cost-report.md).

RAM comes from the real memory plan (`layout.plan`), so the total is exactly sizeof(<name>_ctx_t).
Operation counts come from the real op list (`program.train`) and mirror what the templates in
`templates/ops/` execute, one rule per `OpKind` (`COUNT`). The analytic figures follow the
paper's analytic method (`analytic`); `paper_report` adds the published accounting, head bug included
(docs/cost-report.md#the-papers-table).

What one op of the training step contributes (B = batch; n = elements; widths below):

| op kind | phase | mul | add | div |
|---|---|---|---|---|
| linear_scale | forward; losses for a learning linear | B·out·in | B·out·in, + B·out·⌈in/chunk⌉ int64 when chunked | B·out (NITRO-Scaling) |
| conv_scale | forward | B·C_out·C_in·k²·wide | B·C_out·C_in·k²·wide, + B·C_out·⌈C_in/chunk⌉·wide when chunked | B·C_out·H_o² |
| nitro_relu, max_pool, max_pool_argmax | forward; losses for a learning pool | 0 (table lookup, compares) | 0 | 0 |
| avg_pool | forward; losses for a learning pool | 0 | B·C·(real window cells) | B·C·oh·ow |
| dropout | forward | B·n, + B·n PRNG | B·n PRNG | B·n, + B·n PRNG |
| augment | forward | PRNG | PRNG | PRNG (4 draws per sample or batch) |
| loss_grad | losses | B·C | 2·B·C (+ 2·B·C wrap8 in reference) | 0 (B·C wrap8 in reference) |
| linear_dx | backward | B·out·in | B·out·in | 0 |
| nitro_relu_backward | backward | 0 | 0 | B·n (tdiv by s) |
| linear_grad_sgd | backward (G) | out·B·in | out·B·in | 0 |
| conv_grad_sgd | backward (dz, G) | C_out·B·C_in·L², L = Σ_a valid rows of tap a | C_out·B·C_in·(L² + k²) | C_out·B·H_o² (ReLU backward), + C_out·B·oh·ow with avg routing |
| conv_grad_sgd_max | backward (dz, G) | C_out·B·oh·ow·C_in·k² | C_out·B·oh·ow·C_in·k² | C_out·B·oh·ow (ReLU backward) |
| the three *_grad_sgd | update (IntegerSGD) | 1 int64 (A = lr_inv·amp) | 2 per weight (1 without decay) | per weight: G / A (int64) and W / decay_inv (none without decay) |
| kaiming_init | init only | - | - | - |

* `wide` is the conv forward's run per kernel row: H_o rows of the padded stride, rounded up to 16 lanes, so
  the C multiplies padding zeros and discarded columns too (a 4×4 output costs 32 positions per row, not 16).
* conv_grad_sgd visits only the valid taps (no padding products); conv_grad_sgd_max visits only the argmax
  cell of each learning-pool window: oh·ow = H_o²/(kh·kw) positions, 1/(kh·kw) of the dense count.
* Data-dependent shortcuts are counted as not taken (`if (d == 0) continue`, |G| < A, a dropped element,
  z ≥ 0 in the ReLU backward, argmax cells at the border with fewer taps, the crop coin): the counts are an
  upper bound for one step, reached on dense data.
* A PRNG draw (PCG32 step and `u % n`) is 1 int64 mul, 1 int64 add and 1 int32 divide; a remainder counts as
  a divide. Reference semantics' ng_wrap32 is a reinterpretation (no arithmetic), ng_wrap8 one % and 2 adds.
* Not counted: index and address arithmetic, loop counters, comparisons, clamps, table lookups, copies.
* Widths: a multiply counts at its operands' width, an add at its accumulator's, a divide at its dividend's,
  each widened to 32 by C99's integer promotions (int is 32 bits on every target nitrogen supports). A
  product of two values of at most 32 bits that the C computes in int64 is one widening 32x32->64 multiply
  (SMULL/SMLAL on ARM, MUL+MULH on RISC-V), so it counts as mul32; its int64 accumulation counts as add64.
  True 64-bit multiplies are the PCG32 step and lr_inv * amp. Reference semantics multiply and accumulate
  modulo 2^32 (uint32).

Energy (the paper's method, Horowitz ISSCC 2014, 45 nm): int32 mult 3.1 pJ, add 0.1 pJ; fp32 mult 3.7 pJ,
add 0.9 pJ. Horowitz's own integer figures scale linearly in width for an add (8-bit 0.03 pJ) and
quadratically for a multiply (8-bit 0.2 pJ), so an int64 add is charged 2 × 0.1 pJ and an int64 multiply
4 × 3.1 pJ; ops narrower than 32 bits are charged the int32 cost (C computes them in int). Divides have no
Horowitz cost: they are reported separately and left out of the energy (most divide by a constant, which
compilers turn into a multiply and shifts; G / A divides by a run-time value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .bounds import BoundsReport
from .ir import Op, OpKind, Program, Role
from .layout import Layout, Slot, plan
from .pipeline import analyse
from .spec import ConvBlock, Dropout, LinearBlock, Model, learning_pool_search, stages

SCHEMA = "nitrogen.cost/1"
PHASES = ("forward", "losses", "backward", "update")
COLUMNS = ("mul32", "mul64", "add32", "add64", "div32", "div64")
PJ = {"mul32": 3.1, "mul64": 4 * 3.1, "add32": 0.1, "add64": 2 * 0.1, "div32": 0.0, "div64": 0.0}
FP32_MUL_PJ, FP32_ADD_PJ = 3.7, 0.9
INT32_MUL_PJ, INT32_ADD_PJ = 3.1, 0.1
OPTIMIZERS = {"sgd": (2, 2), "adam": (9, 4)}  # (mul, add) per parameter and step, as the paper counts
NITRO_UPDATE = (2, 2)
PAPER_BATCH = 64
CIFAR_INPUT = (3, 32, 32)


class UsageError(ValueError):
    """Options that do not apply to this spec (the CLI reports them as usage errors, exit 2)."""


# --------------------------------------------------------------------------------------------
# RAM by category, from the real memory plan
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ram:
    """Bytes of the context struct by category; the categories sum to `total` = sizeof(<name>_ctx_t)."""

    params: int
    saved: int      # every non-scratch slot: tensors handed between items, the augmented input
    scratch: int    # slot "scratch": the per-block working tensors (one block's group at a time)
    state: int      # PRNG state and stream, lr_inv, step counter
    padding: int    # alignment: between struct members, at the end, and inside slot unions
    total: int


def _slot_data(slot: Slot) -> int:
    """Bytes of a slot's largest group without alignment padding (the rest of the union is padding)."""
    return max(sum(m.bytes for m in g.members) for g in slot.groups)


def ram(layout: Layout) -> Ram:
    saved = sum(_slot_data(s) for s in layout.slots if s.name != "scratch")
    scratch = sum(_slot_data(s) for s in layout.slots if s.name == "scratch")
    state = sum(m.bytes for m in layout.state)
    padding = layout.ctx_bytes - layout.param_bytes - saved - scratch - state
    return Ram(layout.param_bytes, saved, scratch, state, padding, layout.ctx_bytes)


@dataclass(frozen=True, slots=True)
class BufferUse:
    category: str   # "params", "saved", "scratch" or "state"
    path: str       # C expression relative to ctx: "ctx->b0_w", "ctx->scratch.b1.b1_z"
    ctype: str
    count: int
    bytes: int


def buffers(layout: Layout) -> tuple[BufferUse, ...]:
    """Every member of the context struct (slot members overlay the other groups of their slot)."""
    out = [BufferUse("params", f"ctx->{m.name}", m.ctype, m.count, m.bytes) for m in layout.params]
    for s in layout.slots:
        category = "scratch" if s.name == "scratch" else "saved"
        out += [BufferUse(category, f"ctx->{s.name}.{g.name}.{m.name}", m.ctype, m.count, m.bytes)
                for g in s.groups for m in g.members]
    out += [BufferUse("state", f"ctx->{m.name}", m.ctype, m.count, m.bytes) for m in layout.state]
    return tuple(out)


def largest_buffers(layout: Layout, n: int) -> tuple[BufferUse, ...]:
    """The n largest members of the context struct, largest first (ties: parameters, then slots, then state)."""
    return tuple(sorted(buffers(layout), key=lambda b: -b.bytes)[:n])


# --------------------------------------------------------------------------------------------
# Integer operations of one training step, from the op list
# --------------------------------------------------------------------------------------------

Key = tuple[str, str]  # (phase, op kind)


class _Counter:
    def __init__(self, program: Program, report: BoundsReport) -> None:
        self.p, self.r = program, report
        self.batch = program.constant("BATCH")
        self.wrap = program.semantics == "reference"
        self.rows: dict[Key, dict[str, int]] = {}

    def add(self, phase: str, kind: str, what: str, bits: int, n: int) -> None:
        row = self.rows.setdefault((phase, kind), dict.fromkeys(COLUMNS, 0))
        row[f"{what}{32 if bits <= 32 else 64}"] += n

    def bits(self, name: str) -> int:
        return self.r[name].ctype.bits

    def mac_bits(self, name: str) -> int:
        """Width of a multiply-accumulate's add into `name`: uint32 modulo 2^32 in reference semantics."""
        return 32 if self.wrap else self.bits(name)

    def operands(self, *names: str) -> int:
        """Width of a multiply of these tensors' values: uint32 in reference semantics."""
        return 32 if self.wrap else max(self.bits(n) for n in names)

    def touch(self, phase: str, kind: str) -> None:
        """A row for an op that does no counted arithmetic."""
        self.rows.setdefault((phase, kind), dict.fromkeys(COLUMNS, 0))

    def prng(self, phase: str, kind: str, draws: int) -> None:
        self.add(phase, kind, "mul", 64, draws)
        self.add(phase, kind, "add", 64, draws)
        self.add(phase, kind, "div", 32, draws)

    def sgd(self, op: Op, weights: int) -> None:
        """IntegerSGD of `weights` weights (the `sgd_row` macro) and A = lr_inv * amp once."""
        kind, (_, g, wnew, _) = op.kind.value, op.temps[:4]
        w = op.outs[0]
        self.add("update", kind, "mul", 64, 1)
        self.add("update", kind, "div", 64, weights)
        decay = op.int_attr("decay_inv")
        self.add("update", kind, "add", max(self.bits(wnew), self.bits(g)), weights * (2 if decay else 1))
        if decay:
            self.add("update", kind, "div", self.bits(w), weights)


def _count_none(c: _Counter, op: Op) -> None:
    """kaiming_init runs in init(), never in a training step."""


def _count_linear_scale(c: _Counter, op: Op) -> None:
    x, w = op.ins
    acc = op.temps[0]
    n_in, n_out, b = op.int_attr("n_in"), op.int_attr("n_out"), c.batch
    phase = "losses" if ".learning." in c.p.tensor(w).export else "forward"
    macs = b * n_out * n_in
    chunk = c.r.chunk(acc)
    c.add(phase, op.kind.value, "mul", c.operands(x, w), macs)
    c.add(phase, op.kind.value, "add", 32 if chunk else c.mac_bits(acc), macs)
    if chunk:
        c.add(phase, op.kind.value, "add", c.bits(acc), b * n_out * -(-n_in // chunk))
    c.add(phase, op.kind.value, "div", c.mac_bits(acc), b * n_out)


def _count_conv_scale(c: _Counter, op: Op) -> None:
    x, w = op.ins
    acc, plane, _, _ = op.temps
    cin, cout, k, out = (op.int_attr(key) for key in ("c_in", "c_out", "kernel", "out"))
    wide, b, kind = c.p.tensor(plane).size, c.batch, op.kind.value
    chunk = c.r.chunk(acc)
    macs = b * cout * cin * k * k * wide
    c.add("forward", kind, "mul", c.operands(x, w), macs)
    c.add("forward", kind, "add", 32 if chunk else c.mac_bits(plane), macs)
    if chunk:
        c.add("forward", kind, "add", c.bits(plane), b * cout * -(-cin // chunk) * wide)
    c.add("forward", kind, "div", c.mac_bits(acc), b * cout * out * out)


def _phase_of_pool(c: _Counter, op: Op) -> str:
    return "forward" if c.p.tensor(op.outs[0]).role is Role.ACT else "losses"


def _real_cells(op: Op) -> int:
    """Window cells of one channel that are real input cells (padding cells are skipped)."""
    rows = min(op.int_attr("oh") * op.int_attr("kh"), op.int_attr("ph") + op.int_attr("height")) - op.int_attr("ph")
    cols = min(op.int_attr("ow") * op.int_attr("kw"), op.int_attr("pw") + op.int_attr("width")) - op.int_attr("pw")
    return max(rows, 0) * max(cols, 0)


def _count_max_pool(c: _Counter, op: Op) -> None:
    c.touch(_phase_of_pool(c, op), op.kind.value)  # compares only


def _count_avg_pool(c: _Counter, op: Op) -> None:
    phase, planes, total = _phase_of_pool(c, op), c.batch * op.int_attr("channels"), op.temps[0]
    c.add(phase, op.kind.value, "add", c.bits(total), planes * _real_cells(op))
    c.add(phase, op.kind.value, "div", c.bits(total), planes * op.int_attr("oh") * op.int_attr("ow"))


def _count_nitro_relu(c: _Counter, op: Op) -> None:
    c.touch("forward", op.kind.value)  # table lookup


def _count_dropout(c: _Counter, op: Op) -> None:
    n, prod = c.batch * op.int_attr("count"), op.temps[0]
    c.add("forward", op.kind.value, "mul", c.bits(op.ins[0]), n)  # x times the constant R < 2^17
    c.add("forward", op.kind.value, "div", c.bits(prod), n)
    c.prng("forward", op.kind.value, n)


def _count_augment(c: _Counter, op: Op) -> None:
    units = c.batch if op.attr("per_sample") else 1
    draws = (3 if op.int_attr("crop_pad") else 0) + (1 if op.attr("flip") else 0)
    c.touch("forward", op.kind.value)
    c.prng("forward", op.kind.value, units * draws)


def _count_loss_grad(c: _Counter, op: Op) -> None:
    n = c.batch * op.int_attr("classes")
    c.add("losses", op.kind.value, "mul", 32, n)
    c.add("losses", op.kind.value, "add", 32, n)
    c.add("losses", op.kind.value, "add", c.bits(op.temps[0]), n)
    if c.wrap:  # ng_wrap8: (v + 128) % 256, then - 128
        c.add("losses", op.kind.value, "add", 32, 2 * n)
        c.add("losses", op.kind.value, "div", 32, n)


def _count_linear_dx(c: _Counter, op: Op) -> None:
    delta, w = op.ins
    dx = op.outs[0]
    macs = c.batch * op.int_attr("n_out") * op.int_attr("n_in")
    c.add("backward", op.kind.value, "mul", c.operands(delta, w), macs)
    c.add("backward", op.kind.value, "add", c.mac_bits(dx), macs)


def _count_nitro_relu_backward(c: _Counter, op: Op) -> None:
    dh = op.ins[0]
    c.add("backward", op.kind.value, "div", c.bits(dh), c.p.tensor(dh).size)


def _count_linear_grad_sgd(c: _Counter, op: Op) -> None:
    delta, x, _ = op.ins
    row = op.temps[3]
    n_in, n_out = op.int_attr("n_in"), op.int_attr("n_out")
    macs = n_out * c.batch * n_in
    c.add("backward", op.kind.value, "mul", c.operands(delta, x), macs)
    c.add("backward", op.kind.value, "add", c.mac_bits(row), macs)
    c.sgd(op, n_out * n_in)


def _valid_taps(op: Op) -> int:
    """Sum over kernel offsets a of the output rows whose input row h + a - pad is real (emit.py `_taps`)."""
    size, pad, out, k = (op.int_attr(key) for key in ("size", "pad", "out", "kernel"))
    lo = [max(0, pad - a) for a in range(k)]
    return sum(max(lo[a], min(out, size + pad - a)) - lo[a] for a in range(k))


def _count_conv_grad_sgd(c: _Counter, op: Op) -> None:
    dp, x = op.ins[0], op.ins[-2]
    row, dz = op.temps[3], op.temps[4]
    cin, cout, k, out = (op.int_attr(key) for key in ("c_in", "c_out", "kernel", "out"))
    b, kind = c.batch, op.kind.value
    windows = op.int_attr("oh") * op.int_attr("ow")
    if op.kind is OpKind.CONV_GRAD_SGD_MAX:  # one argmax cell per window, all k*k taps (upper bound)
        c.add("backward", kind, "div", c.bits(dp), cout * b * windows)
        macs = cout * b * windows * cin * k * k
        sums = 0
    else:
        if op.attr("routing") == "avg":
            c.add("backward", kind, "div", c.bits(dp), cout * b * (windows + _real_cells(op)))
        else:
            c.add("backward", kind, "div", c.bits(dp), cout * b * out * out)
        macs = cout * b * cin * _valid_taps(op) ** 2
        sums = cout * b * cin * k * k  # row[...] += sum, once per tap
    c.add("backward", kind, "mul", c.operands(dz, x), macs)
    c.add("backward", kind, "add", c.mac_bits(row), macs + sums)
    c.sgd(op, cout * cin * k * k)


COUNT: dict[OpKind, Callable[[_Counter, Op], None]] = {
    OpKind.KAIMING_INIT: _count_none,
    OpKind.AUGMENT: _count_augment,
    OpKind.LINEAR_SCALE: _count_linear_scale,
    OpKind.NITRO_RELU: _count_nitro_relu,
    OpKind.LOSS_GRAD: _count_loss_grad,
    OpKind.LINEAR_DX: _count_linear_dx,
    OpKind.NITRO_RELU_BACKWARD: _count_nitro_relu_backward,
    OpKind.LINEAR_GRAD_SGD: _count_linear_grad_sgd,
    OpKind.CONV_SCALE: _count_conv_scale,
    OpKind.MAX_POOL: _count_max_pool,
    OpKind.MAX_POOL_ARGMAX: _count_max_pool,
    OpKind.AVG_POOL: _count_avg_pool,
    OpKind.DROPOUT: _count_dropout,
    OpKind.CONV_GRAD_SGD: _count_conv_grad_sgd,
    OpKind.CONV_GRAD_SGD_MAX: _count_conv_grad_sgd,
}


def count_ops(program: Program, report: BoundsReport) -> dict[Key, dict[str, int]]:
    """(phase, op kind) -> {mul32, mul64, add32, add64, div32, div64} for one training step, in phase order."""
    c = _Counter(program, report)
    for op in program.train:
        COUNT[op.kind](c, op)
    return {key: c.rows[key] for phase in PHASES for key in c.rows if key[0] == phase}


def total(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    listed = list(rows)
    return {col: sum(r[col] for r in listed) for col in COLUMNS}


def energy_pj(counts: dict[str, int]) -> float:
    return sum(counts[col] * PJ[col] for col in COLUMNS)


# --------------------------------------------------------------------------------------------
# The paper's analytic method (docs/cost-report.md). For the real plan: the spec's input and batch, and every block's
# real learning linear (D from the learning-pool search). With `paper=True`: the published accounting.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BaseLayer:
    """A conv or linear layer as the paper's analytic method counts it (k = 1 and D = 1 for a linear)."""

    c_in: int
    c_out: int
    k: int = 1
    d_in: int = 1
    d_out: int = 1

    @property
    def params(self) -> int:
        return self.c_out * self.c_in * self.k * self.k


@dataclass(frozen=True, slots=True)
class Arch:
    layers: tuple[BaseLayer, ...]   # every block's forward layer and the output layer
    heads: tuple[BaseLayer, ...]    # learning linears counted for NITRO-D
    batch: int
    input_len: int


def architecture(model: Model, *, paper: bool = False, input_features: int | None = None) -> Arch:
    """The base layers and learning heads of `model`. paper: CIFAR input for CNNs, batch 64 and only the
    first block's head (the published counting bug); input_features: count an MLP with that many inputs."""
    if input_features is not None:
        odd = dict.fromkeys(layer.kind for layer in model.layers if not isinstance(layer, (LinearBlock, Dropout)))
        if odd:
            raise UsageError(f"--input-features applies to MLPs only; '{model.name}' has {', '.join(odd)} layers")
        model = replace(model, input_shape=(input_features, 1, 1))
    elif paper and model.has_conv:
        model = replace(model, input_shape=CIFAR_INPUT)
    layers, heads = [], []
    walk = stages(model)
    for st in walk:
        layer, (cin, hin, win) = st.layer, st.in_shape
        if isinstance(layer, LinearBlock):
            layers.append(BaseLayer(cin * hin * win, layer.out_features))
            heads.append(BaseLayer(layer.out_features, model.num_classes))
        elif isinstance(layer, ConvBlock):
            cout, hout, _ = st.out_shape
            layers.append(BaseLayer(cin, cout, layer.kernel, hin, hout))
            d = learning_pool_search(cout, hout, layer.decoder_dim)[6]
            heads.append(BaseLayer(d, model.num_classes))
    c, h, w = walk[-1].out_shape
    layers.append(BaseLayer(c * h * w, model.num_classes))
    batch = PAPER_BATCH if paper else model.train.batch_size
    return Arch(tuple(layers), tuple(heads[:1] if paper else heads), batch, model.input_len)


def layer_ops(layers: tuple[BaseLayer, ...], bs: int) -> tuple[int, int]:
    """(mul, add) of forward, dW and dX of one step at batch bs, by the paper's analytic method (no update)."""
    mul = add = 0
    for ly in layers:
        k2, s, s_in = ly.k * ly.k, ly.d_out * ly.d_out, ly.d_in * ly.d_in
        fan = ly.c_in * k2
        mul += bs * (ly.c_out * s * fan + ly.c_out * fan * s + ly.c_in * s_in * ly.c_out * k2)
        add += bs * (ly.c_out * s * (fan - 1) + ly.c_in * s_in * (ly.c_out * k2 - 1)) + ly.params * (bs * s - 1)
    return mul, add


@dataclass(frozen=True, slots=True)
class Analytic:
    fp_mul: int
    fp_add: int
    fp_bytes: int
    nitro_mul: int
    nitro_add: int
    nitro_bytes: int

    @property
    def fp_pj(self) -> float:
        return self.fp_mul * FP32_MUL_PJ + self.fp_add * FP32_ADD_PJ

    @property
    def nitro_pj(self) -> float:
        return self.nitro_mul * INT32_MUL_PJ + self.nitro_add * INT32_ADD_PJ


def analytic(arch: Arch, fp_optimizer: str) -> Analytic:
    """FP32 backpropagation and NITRO-D, counted and sized by the paper's analytic method."""
    bs = arch.batch
    params = sum(ly.params for ly in arch.layers)
    heads = sum(h.params for h in arch.heads)
    largest = max(ly.params for ly in arch.layers)
    act = sum(bs * ly.c_out * ly.d_out * ly.d_out for ly in arch.layers)
    mul, add = layer_ops(arch.layers, bs)
    u_mul, u_add = OPTIMIZERS[fp_optimizer]
    fp_bytes = 4 * (params + act + largest + bs * arch.input_len + (2 * params if fp_optimizer == "adam" else 0))
    h_mul, h_add = layer_ops(arch.heads, bs)
    n_mul, n_add = NITRO_UPDATE
    nitro_bytes = (2 * (params + heads) + act + 4 * max([largest] + [h.params for h in arch.heads])
                   + bs * arch.input_len)
    return Analytic(mul + u_mul * params, add + u_add * params, fp_bytes,
                    mul + h_mul + n_mul * (params + heads), add + h_add + n_add * (params + heads), nitro_bytes)


def _pct(ours: float, fp: float) -> float:
    return 100.0 * (1.0 - ours / fp)


# --------------------------------------------------------------------------------------------
# Reports (plain JSON-able dicts) and their text rendering
# --------------------------------------------------------------------------------------------

def constant_tables(program: Program) -> list[tuple[str, int]]:
    """The read-only tables the generated C defines (flash on a microcontroller): one NITRO-ReLU table of
    255 int8 per slope, the CRC-32 nibble table, the checkpoint magic, the valid-tap rows of each dense conv
    weight gradient. Code, the status strings and any switch tables the compiler builds come on top
    (`arm-none-eabi-size` gives those), and so do the 8 bytes per channel of `<name>_normalize()` in a model
    compiled with data-set statistics (`nitrogen train`)."""
    slopes = sorted({op.int_attr("slope_inv") for op in program.train if op.kind is OpKind.NITRO_RELU})
    taps = [(f"{op.outs[0]} tap rows", 2 * 2 * op.int_attr("kernel"))  # row_lo, row_hi: uint16[kernel] each
            for op in program.train if op.kind is OpKind.CONV_GRAD_SGD]
    return [(f"ng_relu_s{s}", 255) for s in slopes] + [("CRC-32 nibble table", 64), ("ng_ck_magic", 4)] + taps


def plan_report(model: Model, *, fp_optimizer: str = "sgd", top: int = 8) -> dict[str, Any]:
    """The real plan of `model`: RAM, op counts, energy and memory next to FP32 (JSON keys: README)."""
    program, bounds = analyse(model)
    layout = plan(program, bounds)
    r = ram(layout)
    rows = count_ops(program, bounds)
    ops = total(rows.values())
    a = analytic(architecture(model), fp_optimizer)
    batch_input = model.train.batch_size * model.input_len
    ours_pj, fp_pj = energy_pj(ops), a.fp_pj
    return {
        "schema": SCHEMA, "mode": "plan", "model": model.name, "semantics": str(model.semantics),
        "batch": model.train.batch_size, "weight_bits": model.weight_bits, "fp_optimizer": fp_optimizer,
        "ram": {"params": r.params, "saved": r.saved, "scratch": r.scratch, "state": r.state,
                "padding": r.padding, "total": r.total,
                "slots": [{"name": s.name, "bytes": s.bytes, "groups": [g.name for g in s.groups]}
                          for s in layout.slots]},
        "flash_tables": {"bytes": sum(n for _, n in constant_tables(program)),
                         "tables": [{"name": t, "bytes": n} for t, n in constant_tables(program)]},
        "largest_buffers": [{"category": b.category, "path": b.path, "ctype": b.ctype, "count": b.count,
                             "bytes": b.bytes} for b in largest_buffers(layout, top)],
        "ops": {"by_kind": [{"phase": p, "kind": k} | row for (p, k), row in rows.items()],
                "by_phase": {p: total(row for (q, _), row in rows.items() if q == p) for p in PHASES},
                "total": ops},
        "energy_pj_per_op": PJ | {"fp32_mul": FP32_MUL_PJ, "fp32_add": FP32_ADD_PJ},
        "energy": {
            "nitrogen": {"mul": ops["mul32"] + ops["mul64"], "add": ops["add32"] + ops["add64"],
                         "div": ops["div32"] + ops["div64"], "mj": ours_pj * 1e-9,
                         "reduction_pct": _pct(ours_pj, fp_pj)},
            "nitro_analytic": {"mul": a.nitro_mul, "add": a.nitro_add, "div": 0, "mj": a.nitro_pj * 1e-9,
                               "reduction_pct": _pct(a.nitro_pj, fp_pj)},
            "fp32": {"mul": a.fp_mul, "add": a.fp_add, "div": 0, "mj": fp_pj * 1e-9, "reduction_pct": 0.0}},
        "memory": {
            "nitrogen": {"bytes": r.total + batch_input, "reduction_pct": _pct(r.total + batch_input, a.fp_bytes)},
            "nitro_analytic": {"bytes": a.nitro_bytes, "reduction_pct": _pct(a.nitro_bytes, a.fp_bytes)},
            "fp32": {"bytes": a.fp_bytes, "reduction_pct": 0.0}},
    }


def paper_report(model: Model, *, fp_optimizer: str = "sgd", input_features: int | None = None) -> dict[str, Any]:
    """The published accounting of the paper's analytic method for `model` (one row of its table)."""
    arch = architecture(model, paper=True, input_features=input_features)
    a = analytic(arch, fp_optimizer)
    return {
        "schema": SCHEMA, "mode": "paper", "model": model.name, "batch": arch.batch, "fp_optimizer": fp_optimizer,
        "input_features": arch.input_len, "classes": model.num_classes, "heads": [h.c_in for h in arch.heads],
        "fp_mul": a.fp_mul, "fp_add": a.fp_add, "nitro_mul": a.nitro_mul, "nitro_add": a.nitro_add,
        "fp_energy_mj": a.fp_pj * 1e-9, "nitro_energy_mj": a.nitro_pj * 1e-9,
        "energy_reduction_pct": _pct(a.nitro_pj, a.fp_pj),
        "fp_memory_mb": a.fp_bytes / 1e6, "nitro_memory_mb": a.nitro_bytes / 1e6,
        "memory_reduction_pct": _pct(a.nitro_bytes, a.fp_bytes),
    }


def _n(value: int) -> str:
    return f"{value:,}".replace(",", " ")


def render_plan(d: dict[str, Any]) -> str:
    r, name = d["ram"], d["model"]
    opt = "SGD" if d["fp_optimizer"] == "sgd" else "Adam"
    weights = "int32 (wrapping)" if d["semantics"] == "reference" else f"{d['weight_bits']}-bit saturating"
    out = [f"{name}: {d['semantics']} semantics, batch {d['batch']}, weights {weights}", "",
           f"RAM: sizeof({name}_ctx_t) = {name.upper()}_CTX_BYTES = {_n(r['total'])} bytes"]
    saved_slots = ", ".join(s["name"] for s in r["slots"] if s["name"] != "scratch") or "none"
    for label, key in (("parameters", "params"), (f"saved and handed-over tensors ({saved_slots})", "saved"),
                       ("scratch (one block's working tensors at a time)", "scratch"),
                       ("PRNG, learning rate, step counter", "state"), ("alignment padding", "padding"),
                       ("total", "total")):
        out.append(f"  {label:<50} {_n(r[key]):>14}  {100 * r[key] / r['total']:5.1f} %")
    flash = d["flash_tables"]
    out += ["", f"Flash: constant tables {_n(flash['bytes'])} bytes (" +
            ", ".join(f"{t['name']} {t['bytes']}" for t in flash["tables"]) + "), plus code and strings",
            "", "Largest buffers"]
    for b in d["largest_buffers"]:
        out.append(f"  {b['path']:<40} {b['ctype'] + '[' + str(b['count']) + ']':<22} {_n(b['bytes']):>14}")
    ops = d["ops"]
    out += ["", f"Integer operations of one training step (batch {d['batch']}) in the generated C, upper bound",
            f"  {'phase':<9} {'op kind':<20}" + "".join(f"{c:>16}" for c in COLUMNS)]
    for phase, subtotal in ops["by_phase"].items():
        for row in ops["by_kind"]:
            if row["phase"] == phase:
                out.append(f"  {phase:<9} {row['kind']:<20}" + "".join(f"{_n(row[c]):>16}" for c in COLUMNS))
        out.append(f"  {phase + ' total':<30}" + "".join(f"{_n(subtotal[c]):>16}" for c in COLUMNS))
    out.append(f"  {'step total':<30}" + "".join(f"{_n(ops['total'][c]):>16}" for c in COLUMNS))
    e = d["energy"]
    out += ["", "Energy of one training step, 45 nm (int32 mult 3.1 pJ, add 0.1 pJ, int64 4x and 2x; "
                "fp32 mult 3.7 pJ, add 0.9 pJ); divides not costed",
            f"  {'':<44}{'mul':>18}{'add':>18}{'div':>16}{'energy mJ':>14}{'reduction':>11}"]
    for label, key in (("NITRO-D, generated C", "nitrogen"),
                       ("NITRO-D, paper method, a head per block", "nitro_analytic"),
                       (f"FP32 backprop + {opt}, paper method", "fp32")):
        v = e[key]
        red = f"{v['reduction_pct']:>9.2f} %" if key != "fp32" else ""
        out.append(f"  {label:<44}{_n(v['mul']):>18}{_n(v['add']):>18}{_n(v['div']):>16}{v['mj']:>14.6g}{red}")
    m = d["memory"]
    out += ["", "Memory of one training step", f"  {'':<52}{'bytes':>16}{'MB':>12}{'reduction':>11}"]
    for label, key in (("NITRO-D, generated C: context + int8 input batch", "nitrogen"),
                       ("NITRO-D, paper formula: 16-bit W, 8-bit activations", "nitro_analytic"),
                       (f"FP32 backprop + {opt}, paper formula", "fp32")):
        v = m[key]
        red = f"{v['reduction_pct']:>9.2f} %" if key != "fp32" else ""
        out.append(f"  {label:<52}{_n(v['bytes']):>16}{v['bytes'] / 1e6:>12.4f}{red}")
    return "\n".join(out)


def render_paper(d: dict[str, Any]) -> str:
    head = (f"{'net':<16} {'FP energy mJ':>13} {'NITRO-D mJ':>12} {'energy red.':>11} {'FP memory MB':>13} "
            f"{'NITRO-D MB':>11} {'memory red.':>11}")
    row = (f"{d['model']:<16} {d['fp_energy_mj']:>13.6g} {d['nitro_energy_mj']:>12.6g} "
           f"{d['energy_reduction_pct']:>9.2f} % {d['fp_memory_mb']:>13.4f} {d['nitro_memory_mb']:>11.4f} "
           f"{d['memory_reduction_pct']:>9.2f} %")
    note = (f"the paper's accounting as published: batch {d['batch']}, {d['input_features']} inputs, FP32 + "
            f"{d['fp_optimizer']}, learning head {d['heads'][0]}->{d['classes']} on the first block only")
    return "\n".join((head, "-" * len(head), row, note))
